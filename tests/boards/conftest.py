import sys
from pathlib import Path

# The board fixtures (ESP ROM emulator, raw-REPL pty) are plain modules next to the tests.
sys.path.insert(0, str(Path(__file__).parent))
