# Stands in for the `_tinyml` user C module (firmware/micropython/usermod), which the PyPI unix port cannot have:
# same constructor and invoke() contract, computed by tinyml's own reference kernels. It lets the tests check that
# tinyml dispatches to the module when present and falls back to viper where it must. The real module was built
# and checked bit-exact against viper on the unix and qemu ports (docs/boards.md).
import tinyml

invokes = 0


class Model:
    def __init__(self, blob, arena):
        self._m = tinyml.load(bytes(blob), reference=True)
        if "TREE_ENSEMBLE" in self._m.ops:
            raise ValueError("tml UNSUPPORTED: opcode 16")   # as the C runtime answers today
        self._arena = arena

    def invoke(self):
        global invokes
        invokes += 1
        self._m.arena[:] = self._arena
        self._m.invoke()
        self._arena[:] = self._m.arena
