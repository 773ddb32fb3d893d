"""TFLite pass-through for TFLM devices, and finding back-ends through entry points."""

import sys
import textwrap

import pytest

from tinymlaas.backends import Backend, BackendError, SourceModel, Target, available_backends, backend


def _runs(data, arena):
    from tinymlaas.backends.passthrough import _StderrCapture, _runs_with
    with _StderrCapture():
        return _runs_with(data, arena)


@pytest.mark.parametrize("key,macs", [("kws", 2656768), ("ad", 264192)])
def test_passthrough_measures_the_arena_tflm_needs(mlperf, key, macs):
    data = mlperf(key).read_bytes()
    art = backend("tflite").compile(SourceModel("tflite", data), Target("tflm"), {})
    assert art.kind == "tflite" and art.data == data and art.flash_bytes == len(data)
    assert art.macs == macs
    assert "FULLY_CONNECTED" in art.ops and art.features["float_io"] is False
    # The measured arena is (to 16 bytes) the smallest with which tflite-micro allocates and invokes the model.
    assert _runs(data, art.ram_bytes)
    assert not _runs(data, art.ram_bytes - 16)
    assert art.ram_bytes >= art.report["arena_recorded_bytes"] > 0


def test_passthrough_refusals(mlperf):
    be = backend("tflite")
    data = mlperf("kws").read_bytes()
    with pytest.raises(BackendError, match="does not target runtime tinyml-mpy"):
        be.compile(SourceModel("tflite", data), Target("tinyml-mpy"), {})
    with pytest.raises(BackendError, match="does not accept keras"):
        be.compile(SourceModel("keras", b"PK"), Target("tflm"), {})
    with pytest.raises(BackendError, match="does not register DEPTHWISE_CONV_2D"):
        be.compile(SourceModel("tflite", data), Target("tflm", ops=frozenset({"CONV_2D", "AVERAGE_POOL_2D", "RESHAPE",
                                                                               "FULLY_CONNECTED", "SOFTMAX"})), {})
    with pytest.raises(BackendError, match="TFLite"):
        be.compile(SourceModel("tflite", b"\0" * 64), Target("tflm"), {})


def test_builtin_backends_are_found():
    found = available_backends()
    assert {"tmlb-int8", "trees", "tflite"} <= set(found)
    for name, cls in found.items():
        assert issubclass(cls, Backend) and cls.name == name


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    """A distribution installed only on a temporary sys.path entry, declaring tinymlaas.backends entry points."""

    def make(entries, module_source):
        (tmp_path / "tmlplugin.py").write_text(textwrap.dedent(module_source))
        info = tmp_path / "tmlplugin-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tmlplugin\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text("[tinymlaas.backends]\n" + "".join(
            "%s = %s\n" % kv for kv in entries.items()))
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, "tmlplugin", raising=False)

    return make


PLUGIN = """
    from tinymlaas.backends import Artifact, Backend

    class EchoBackend(Backend):
        name = "echo"
        accepts = frozenset({"tflite"})
        runtimes = frozenset({"tflm"})

        def compile(self, source, target, options):
            self.check(source, target, options)
            return Artifact("tflite", source.data, len(source.data), 0, 0, [], {})

    class NotABackend:
        pass
"""


def test_third_party_backend_is_found_through_its_entry_point(plugin_dist):
    plugin_dist({"echo": "tmlplugin:EchoBackend", "trees": "tmlplugin:EchoBackend"}, PLUGIN)
    found = available_backends()
    assert found["echo"].__module__ == "tmlplugin"
    # A plugin may not shadow a built-in back-end's name.
    assert found["trees"].__module__ == "tinymlaas.backends.trees"
    art = backend("echo").compile(SourceModel("tflite", b"abc"), Target("tflm"), {})
    assert art.data == b"abc" and art.flash_bytes == 3


def test_entry_point_that_is_not_a_backend_is_an_error(plugin_dist):
    plugin_dist({"broken": "tmlplugin:NotABackend"}, PLUGIN)
    with pytest.raises(BackendError, match="broken does not name a tinymlaas Backend"):
        available_backends()


def test_unknown_backend_name():
    with pytest.raises(BackendError, match="unknown back-end 'onnx'"):
        backend("onnx")
