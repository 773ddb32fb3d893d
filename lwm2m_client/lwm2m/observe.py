# Observations (RFC 7641) and LwM2M notification attributes (pmin, pmax, gt, lt, st).
#
# Attributes are set with Write-Attributes on an object, instance or resource path; the most specific level
# wins. A notification is due when the observed value changed (every change counts: an inference that repeats
# the previous output is still a new result) and pmin has passed, or when pmax has passed. gt/lt/st further
# filter changes of numeric resources: crossing gt or lt, or moving by at least st since the last notification.

MAX_OBSERVATIONS = 8
SEQ_MASK = 0xFFFFFF  # Observe option values are 24-bit (RFC 7641 §4.4)
ATTRS = ("pmin", "pmax", "gt", "lt", "st")


class AttributesError(ValueError):
    pass


def parse_attributes(queries):
    """['pmin=10', 'gt=5.5', 'pmax'] -> {'pmin': 10, 'gt': 5.5, 'pmax': None}; None removes an attribute."""
    out = {}
    for q in queries:
        name, eq, val = q.partition("=")
        if name not in ATTRS:
            raise AttributesError("unknown attribute %s" % name)
        if not eq:
            out[name] = None
            continue
        try:
            out[name] = int(val) if name in ("pmin", "pmax") else float(val)
        except ValueError:
            raise AttributesError("attribute %s=%s is not a number" % (name, val))
        if out[name] < 0 and name in ("pmin", "pmax", "st"):
            raise AttributesError("attribute %s must not be negative" % name)
    if out.get("pmin") is not None and out.get("pmax") is not None and out["pmax"] < out["pmin"]:
        raise AttributesError("pmax < pmin")
    return out


class Observation:
    __slots__ = ("addr", "token", "path", "fmt", "seq", "last_ms", "last_value", "dirty", "sent", "request_id")

    def __init__(self, addr, token, path, fmt, now, request_id=None):
        self.addr = addr
        self.token = token
        self.path = path
        self.fmt = fmt
        self.seq = 0
        self.last_ms = now
        self.last_value = None
        self.dirty = False
        self.sent = 0
        self.request_id = request_id  # OSCORE: the Observe request's RequestId, which notifications answer

    def next_seq(self):
        self.seq = (self.seq + 1) & SEQ_MASK
        return self.seq

    def covers(self, path):
        return path[:len(self.path)] == self.path


class Attributes:
    def __init__(self):
        self.by_path = {}

    def set(self, path, attrs):
        cur = dict(self.by_path.get(path, {}))
        for k, v in attrs.items():
            if v is None:
                cur.pop(k, None)
            else:
                cur[k] = v
        if cur:
            self.by_path[path] = cur
        else:
            self.by_path.pop(path, None)

    def effective(self, path, default_pmin=0, default_pmax=0):
        out = {"pmin": default_pmin, "pmax": default_pmax}
        for n in range(1, len(path) + 1):
            out.update(self.by_path.get(path[:n], {}))
        return out

    def link_attrs(self, path):
        a = self.by_path.get(path)
        if not a:
            return ""
        return "".join(";%s=%s" % (k, a[k]) for k in ATTRS if k in a)


def passes_thresholds(attrs, old, new):
    """gt/lt/st on numeric values; True when no numeric attribute applies."""
    if not isinstance(new, (int, float)) or isinstance(new, bool) or old is None:
        return True
    gt = attrs.get("gt")
    lt = attrs.get("lt")
    st = attrs.get("st")
    if gt is None and lt is None and st is None:
        return True
    if gt is not None and (old > gt) != (new > gt):
        return True
    if lt is not None and (old < lt) != (new < lt):
        return True
    if st is not None and abs(new - old) >= st:
        return True
    return False
