"""Output helpers shared by the sub-commands: JSON or aligned tables, and a progress line for long steps."""

import json
import sys


def print_json(obj):
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def print_table(rows, columns, out=sys.stdout):
    """rows: list of dicts; columns: list of (key, heading)."""
    cells = [[str(r.get(k, "")) if r.get(k) is not None else "" for k, _ in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)]
    print("  ".join(h.ljust(w) for (_, h), w in zip(columns, widths)).rstrip(), file=out)
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip(), file=out)


class Progress:
    """A one-line progress bar on stderr when it is a terminal; silent otherwise (and with --json)."""

    def __init__(self, label, total=None, enabled=True):
        self.label, self.total = label, total
        self.enabled = enabled and sys.stderr.isatty()
        self.last = -1

    def __call__(self, done, total=None):
        total = total or self.total
        if not self.enabled or not total:
            return
        pct = int(100 * done / total)
        if pct == self.last:
            return
        self.last = pct
        bar = "#" * (pct // 4)
        sys.stderr.write("\r%s [%-25s] %3d%% %d/%d" % (self.label, bar, pct, done, total))
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def note(self, text):
        if self.enabled:
            sys.stderr.write("%s\n" % text)
