"""The MicroPython integration files name things that exist: the manifest's packages and modules (resolved the way
MicroPython's manifest loader does, relative to the manifest file), and the user C module's sources."""

import re
import subprocess

import pytest

from tinymlaas.paths import FIRMWARE, REPO, c_runtime_sources

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


@pytest.mark.parametrize("port, port_default", [("esp32", "$(PORT_DIR)/boards/manifest.py"),
                                                ("stm32", "$(PORT_DIR)/boards/manifest.py"),
                                                ("unix", "$(PORT_DIR)/variants/standard/manifest.py"),
                                                ("qemu", None)])
def test_port_wrappers(port, port_default):
    """Each wrapper keeps the port's default frozen modules (the unix port's standard variant: asyncio, ssl, mip);
    qemu has none."""
    calls = run_manifest(MP / "boards" / (port + ".py"), [])
    assert [p for kind, p in calls if kind == "port"] == ([port_default] if port_default else [])
    assert ("package", REPO / "inference_module" / "tinyml") in calls


def test_user_c_module_sources_exist():
    mk = (MP / "usermod" / "tinyml" / "micropython.mk").read_text()
    cmake = (MP / "usermod" / "tinyml" / "micropython.cmake").read_text()
    runtime = REPO / "inference_module" / "c"
    # micropython.mk takes the list from sources.mk; micropython.cmake repeats it, in the same order
    assert "include $(TINYML_RUNTIME_DIR)/sources.mk" in mk
    listed = re.findall(r"\$\{TINYML_RUNTIME_DIR\}/(tml_\w+\.c)", cmake)
    assert listed == [p.name for p in c_runtime_sources() + c_runtime_sources("TML_SIG_SRCS")]
    assert all((runtime / name).exists() for name in listed)
    fast = [p.name for p in c_runtime_sources("TML_FAST_SRCS")]  # host library only
    assert sorted(p.name for p in runtime.glob("tml_*.c")) == sorted(listed + fast)  # none left out
    assert "mod_tinyml.c" in mk and "mod_tinyml.c" in cmake
    # Both build systems find the runtime four levels up from the module directory.
    rel = "../../../../inference_module/c"
    assert rel in mk and rel in cmake
    assert (MP / "usermod" / "tinyml" / rel).resolve() == runtime
    assert "tinyml/micropython.cmake" in (MP / "usermod" / "micropython.cmake").read_text()
    # The binding registers the module under the name docs/boards.md gives.
    assert re.search(r"MP_REGISTER_MODULE\(MP_QSTR__tinyml,", (MP / "usermod" / "tinyml" / "mod_tinyml.c").read_text())


def _folder_of_symlinks(tmp_path):
    """The older recipe for several user C modules: one folder of symlinks, USER_C_MODULES=that folder."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "tinyml").symlink_to(MP / "usermod" / "tinyml")
    return modules


def test_make_module_finds_the_runtime_through_a_symlink(tmp_path):
    """As py/py.mk includes it: USERMOD_DIR is the module folder as found, here a symlink. The runtime path must
    come from its real path, not from four levels above the symlink (which gave -I/inference_module/c)."""
    mod = _folder_of_symlinks(tmp_path) / "tinyml"
    (tmp_path / "Makefile").write_text("USERMOD_DIR := %s\ninclude %s/micropython.mk\n"
                                       "show:\n\t@echo $(CFLAGS_USERMOD)\n\t@echo $(SRC_USERMOD_LIB_C)\n" % (mod, mod))
    out = subprocess.run(["make", "-s", "-C", str(tmp_path), "show"], capture_output=True, text=True, check=True)
    cflags, sources = out.stdout.splitlines()
    runtime = REPO / "inference_module" / "c"
    assert "-I%s" % runtime in cflags.split()
    assert sources.split() == [str(p) for p in c_runtime_sources() + c_runtime_sources("TML_SIG_SRCS")]


def test_cmake_module_finds_the_runtime_through_a_symlink(tmp_path):
    mod = _folder_of_symlinks(tmp_path) / "tinyml"
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.12)\nproject(t NONE)\nadd_library(usermod INTERFACE)\n"
        "include(%s/micropython.cmake)\nget_target_property(inc usermod_tinyml INTERFACE_INCLUDE_DIRECTORIES)\n"
        "message(STATUS \"include=${inc}\")\n" % mod)
    out = subprocess.run(["cmake", "-S", str(tmp_path), "-B", str(tmp_path / "build")], capture_output=True,
                         text=True, check=True)
    assert "include=%s" % (REPO / "inference_module" / "c") in out.stdout
