"""LwM2M paths: "/3/0/1/2" <-> (3, 0, 1, 2).

A path names an object, an object instance, a resource or a resource instance. Object and instance IDs are
16-bit; 65535 is reserved (LwM2M 1.1 §7.1), so it is rejected.
"""


class PathError(ValueError):
    pass


MAX_ID = 65534


def parse(text):
    """"/3/0/1" -> (3, 0, 1). Raises PathError on anything else; "/" is the root ()."""
    if not isinstance(text, str) or not text.startswith("/"):
        raise PathError("LwM2M path must start with '/': %r" % (text,))
    body = text[1:].rstrip("/") if text != "/" else ""
    if not body:
        return ()
    parts = body.split("/")
    if len(parts) > 4:
        raise PathError("LwM2M path has more than 4 levels: %r" % text)
    ids = []
    for p in parts:
        if not p.isdigit() or not p.isascii() or (len(p) > 1 and p[0] == "0"):
            raise PathError("LwM2M path component is not a decimal ID: %r in %r" % (p, text))
        v = int(p)
        if v > MAX_ID:
            raise PathError("LwM2M ID %d out of range 0..%d in %r" % (v, MAX_ID, text))
        ids.append(v)
    return tuple(ids)


def fmt(path):
    """(3, 0, 1) -> "/3/0/1"."""
    return "/" + "/".join(str(i) for i in path)


def check(path):
    """Accept a str or tuple and return the tuple form."""
    if isinstance(path, str):
        return parse(path)
    path = tuple(path)
    if len(path) > 4 or any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i <= MAX_ID for i in path):
        raise PathError("bad LwM2M path %r" % (path,))
    return path
