"""Strict JSON on the device (inference_module/tinyml/strictjson.py) where it matters: an install package whose
metadata MicroPython's json.loads would misread ('{"threshold"7 1.9}' reads as {'threshold': 7}) or whose anomaly
threshold is not finite is refused with the reason, and the active model stays active; the host refuses to build
such metadata. Non-finite numbers have no SenML-JSON or text form on either side (CBOR and TLV carry them)."""

import hashlib
import math
import struct

import pytest

from packages import package

from tinymlaas.devices import unixport
from tinymlaas.devices.emulated import device_trust
from tinymlaas.lwm2m.codecs import senml as host_senml
from tinymlaas.lwm2m.codecs.errors import CodecError
from tinymlaas.package import PackageError, build_package

HEADER = "<4sHHIIIIII"


def with_meta(pkg, meta_text):
    """`pkg` with its metadata section replaced by `meta_text` (padded with spaces to the old length, so the blob
    stays 16-aligned) and the trailer hash recomputed; the signed manifest covers the blob and vectors only."""
    fields = list(struct.unpack_from(HEADER, pkg))
    meta_n, env_n = fields[3], fields[8]
    start = 32 + env_n
    raw = meta_text.encode()
    assert len(raw) <= meta_n
    body = pkg[:start] + raw + b" " * (meta_n - len(raw)) + pkg[start + meta_n:-32]
    return body + hashlib.sha256(body).digest()


DEVICE = "from tinyml.trust import Trust\nTRUST = Trust.from_config(%r)\n" + r"""
import sys
import tinyml.installer as I
inst = I.Installer(sys.argv[1], trust=TRUST)
for path in sys.argv[2:]:
    data = open(path, 'rb').read()
    try:
        inst.begin(len(data))
        inst.write(0, data)
        inst.finish()
        inst.activate()
        print('INSTALLED', inst.active()['name'])
    except I.InstallError as e:
        print('RESULT', e.result, e.message)
    print('ACTIVE', inst.active()['name'], inst.active().get('anomaly'))
"""


def test_malformed_or_non_finite_metadata_is_refused_and_the_active_model_stays(tmp_path):
    good, _, _ = package("fc_no_bias_softmax", name="keeper", version="7")
    base = '{"name":"next","version":"8"'  # the name and version the device reports come from the manifest
    bad = {
        "missing_colon": base + ',"anomaly":{"score":"output","threshold"7 1.9}}',  # lenient: {'threshold': 7}
        "stray": base + '}x',
        "inf_threshold": base + ',"anomaly":{"score":"output","threshold":1e999}}',
        "minus_inf": base + ',"anomaly":{"score":"output","threshold":-1e999}}',
        "nan_token": base + ',"anomaly":{"score":"output","threshold":NaN}}',
        "not_object": "[1]",
    }
    paths = [tmp_path / "good.pkg"]
    paths[0].write_bytes(good)
    for k, text in bad.items():
        paths.append(tmp_path / (k + ".pkg"))
        paths[-1].write_bytes(with_meta(good, text))
    code = DEVICE % (device_trust(),)
    out = unixport.run(code=code, heap="256k", args=[tmp_path / "flash"] + paths).stdout.decode().splitlines()
    assert out[:2] == ["INSTALLED keeper", "ACTIVE keeper None"], out
    reasons = dict(zip(bad, out[2::2]))
    for k in bad:
        assert reasons[k].startswith("RESULT 6 package metadata"), (k, reasons[k])
    assert "':' expected" in reasons["missing_colon"] and "bytes after" in reasons["stray"]
    assert "beyond a double" in reasons["inf_threshold"] and "beyond a double" in reasons["minus_inf"]
    assert "not a JSON object" in reasons["not_object"]
    assert out[3::2] == ["ACTIVE keeper None"] * len(bad), out


def test_a_non_finite_threshold_leaves_the_model_unloaded_with_the_reason():
    # reachable without JSON: a pointer written by an older installer, or a config given in code
    out = unixport.run(code=r"""
from lwm2m import anomaly
class Obj:
    def unload(self): self.model = None
for t in (float('inf'), float('-inf'), float('nan'), 10 ** 400, 1.5):
    o = Obj()
    o.model, o.info, o.state, o.anomaly = object(), {'anomaly': {'score': 'output', 'threshold': t}}, 'active', None
    try:
        anomaly.Monitor(o, o.model, o.info['anomaly'])
    except ValueError as e:
        print('REJ', e)
    except Exception as e:
        print('OTHER', type(e).__name__)
""").stdout.decode().splitlines()
    assert out[:4] == ["REJ anomaly threshold inf is not a finite number", "REJ anomaly threshold -inf is not a "
                       "finite number", "REJ anomaly threshold nan is not a finite number",
                       "REJ anomaly threshold inf is not a finite number"], out
    assert out[4:] == ["OTHER AttributeError"], out  # 1.5 passes the check, then the stand-in model has no outputs


@pytest.mark.parametrize("threshold", [math.inf, -math.inf, math.nan])
def test_the_host_builds_no_package_with_a_non_finite_threshold(threshold):
    pkg, blob, vectors = package("fc_no_bias_softmax", name="keeper", version="7")
    with pytest.raises(PackageError, match="finite"):
        build_package(blob, "a", "1", vectors, anomaly={"score": "output", "threshold": threshold})


class _Model:
    def type_of(self, path):
        return "Float"


def test_host_senml_json_has_no_non_finite_numbers_cbor_does():
    path = (32770, 0, 34)
    for v in (math.inf, -math.inf, math.nan):
        with pytest.raises(CodecError, match="non-finite"):
            host_senml.encode_json(path, {path: v}, _Model())
        back = host_senml.decode_cbor(path, host_senml.encode_cbor(path, {path: v}, _Model()), _Model())[path]
        assert back == v or v != v and back != back
    for text in (b'[{"bn":"/32770/0/34","v":1e999}]', b'[{"bn":"/32770/0/34","v":-1e999}]',
                 b'[{"bn":"/32770/0/34","v":NaN}]', b'[{"bn":"/32770/0/34","v":' + b"9" * 400 + b"}]"):
        with pytest.raises(CodecError):
            host_senml.decode_json(path, text, _Model())


def test_device_text_and_senml_json_refuse_non_finite_floats_cbor_carries_them():
    out = unixport.run(code=r"""
from lwm2m import content, objects as ob
for v in (float('inf'), float('nan')):
    for fmt in (content.TEXT, content.SENML_JSON, content.SENML_CBOR, content.TLV):
        try:
            content.encode_single(fmt, 32770, 0, 34, ob.FLOAT, v)
            print('OK', fmt)
        except content.ContentError as e:
            print('REJ', fmt, e)
for s in (b'inf', b'nan', b'-inf', b'1.5'):
    try:
        print('W', content.from_text(ob.FLOAT, s))
    except ValueError as e:
        print('WREJ', e)
""").stdout.decode().splitlines()
    assert out[:4] == ["REJ 0 inf has no text form (read it as TLV or SenML-CBOR)",
                       "REJ 110 /32770/0/34 is inf: SenML-JSON has no non-finite numbers (read it as SenML-CBOR)",
                       "OK 112", "OK 11542"], out
    assert out[4].startswith("REJ 0") and out[5].startswith("REJ 110") and out[6:8] == ["OK 112", "OK 11542"], out
    assert out[8:] == ["WREJ float 'inf' is not finite", "WREJ float 'nan' is not finite",
                       "WREJ float '-inf' is not finite", "W 1.5"], out
