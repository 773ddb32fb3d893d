"""The MicroPython integration files name things that exist: the manifest's packages and modules (resolved the way
MicroPython's manifest loader does, relative to the manifest file), and the user C module's sources."""

import re

import pytest

from tinymlaas.paths import FIRMWARE, REPO

MP = FIRMWARE / "micropython"


def run_manifest(path, calls):
    """Execute a manifest with package()/module()/include() recording resolved paths (no MicroPython needed)."""
    base = path.parent

    def package(name, files=None, base_path=".", opt=None):
        calls.append(("package", (base / base_path / name).resolve()))

    def module(name, base_path=".", opt=None):
        calls.append(("module", (base / base_path / name).resolve()))

    def include(p):
        if p.startswith("$("):
            calls.append(("port", p))                     # the port's own manifest, outside this repository
        else:
            run_manifest((base / p).resolve(), calls)

    exec(compile(path.read_text(), str(path), "exec"), {"package": package, "module": module, "include": include})
    return calls


def test_manifest_freezes_the_device_packages():
    calls = run_manifest(MP / "manifest.py", [])
    paths = {p for _, p in calls}
    for _, p in calls:
        assert p.exists(), p
    assert REPO / "inference_module" / "tinyml" in paths
    assert {REPO / "lwm2m_client" / n for n in ("hal.py", "coap", "lwm2m", "tinyml_device.py")} <= paths
    assert MP / "modules" / "tinyml_repl.py" in paths


@pytest.mark.parametrize("port, includes_port_default", [("esp32", True), ("stm32", True), ("unix", False),
                                                         ("qemu", False)])
def test_port_wrappers(port, includes_port_default):
    calls = run_manifest(MP / "boards" / (port + ".py"), [])
    assert (("port", "$(PORT_DIR)/boards/manifest.py") in calls) == includes_port_default
    assert ("package", REPO / "inference_module" / "tinyml") in calls


def test_user_c_module_sources_exist():
    mk = (MP / "usermod" / "tinyml" / "micropython.mk").read_text()
    cmake = (MP / "usermod" / "tinyml" / "micropython.cmake").read_text()
    runtime = REPO / "inference_module" / "c"
    for name in ("tml_load.c", "tml_ops.c", "tml_sha256.c"):
        assert (runtime / name).exists() and name in mk and name in cmake
    assert "mod_tinyml.c" in mk and "mod_tinyml.c" in cmake
    # Both build systems find the runtime four levels up from the module directory.
    rel = "../../../../inference_module/c"
    assert rel in mk and rel in cmake
    assert (MP / "usermod" / "tinyml" / rel).resolve() == runtime
    assert "tinyml/micropython.cmake" in (MP / "usermod" / "micropython.cmake").read_text()
    # The binding registers the module under the name docs/boards.md gives.
    assert re.search(r"MP_REGISTER_MODULE\(MP_QSTR__tinyml,", (MP / "usermod" / "tinyml" / "mod_tinyml.c").read_text())
