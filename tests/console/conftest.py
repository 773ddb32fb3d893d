"""The console's tests use the end-to-end tests' waiting helpers (tests/e2e/e2e_helpers.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
