"""`python -m bench [NAME ...] [--quick ...]`: run every benchmark in bench/ (each module bench/<name>.py with a
main(argv)), or the ones named; the arguments from the first "--" one on are given to each (--quick: a smaller
run)."""

import importlib
import pkgutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover():
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))


def main(argv):
    sys.path.insert(0, str(HERE.parent))
    first_flag = next((i for i, a in enumerate(argv) if a.startswith("--")), len(argv))
    flags = argv[first_flag:]                      # e.g. --quick, --devices 100: to each benchmark as they are
    names = argv[:first_flag] or discover()
    failed = []
    for name in names:
        mod = importlib.import_module("bench." + name)
        if not hasattr(mod, "main"):
            continue
        print("== bench/%s.py" % name, flush=True)
        t0 = time.perf_counter()
        try:
            code = mod.main(list(flags)) or 0
        except Exception as e:  # noqa: BLE001 -- one broken benchmark must not hide the others' numbers
            print("bench/%s.py failed: %s: %s" % (name, type(e).__name__, e), flush=True)
            code = 1
        print("== bench/%s.py done in %.1f s (exit %d)\n" % (name, time.perf_counter() - t0, code), flush=True)
        if code:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
