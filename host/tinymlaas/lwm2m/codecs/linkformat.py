"""CoRE Link Format (40, RFC 6690) as used by LwM2M Register and Discover.

`</3/0>;ver=1.1,</5/0>,</32770/0>;pmin=10` <-> [Link("/3/0", {"ver": "1.1"}), ...]. Attribute values keep their
text; a value-less attribute maps to None. Quoted-string values may contain ',' and ';'.
"""

from dataclasses import dataclass, field

from .errors import CodecError

_TOKEN_CHARS = set("!#$%&'()*+-.:<=>?@[]^_`{|}~/" "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PARAM_NAME = set("!#$&+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ*")
MAX_LINKS = 4096  # far more than any LwM2M client registers; bounds the work a hostile payload can cause


@dataclass
class Link:
    uri: str
    params: dict = field(default_factory=dict)

    def __str__(self):
        return "<%s>%s" % (self.uri, "".join(_param_text(k, v) for k, v in self.params.items()))


def _param_text(name, value):
    if value is None:
        return ";" + name
    value = str(value)
    if value and all(c in _TOKEN_CHARS for c in value) and not value.startswith('"'):
        return ";%s=%s" % (name, value)
    return ';%s="%s"' % (name, value.replace("\\", "\\\\").replace('"', '\\"'))


def encode(links):
    return ",".join(str(l) for l in links).encode("utf-8")


def decode(payload):
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError("link-format is not UTF-8") from None
    links = []
    pos, end = 0, len(text)
    if end == 0:
        return links
    while True:
        if len(links) >= MAX_LINKS:
            raise CodecError("more than %d links" % MAX_LINKS)
        if pos >= end or text[pos] != "<":
            raise CodecError("link must start with '<' at offset %d" % pos)
        close = text.find(">", pos + 1)
        if close < 0:
            raise CodecError("unterminated '<' at offset %d" % pos)
        uri = text[pos + 1 : close]
        if any(c in uri for c in "<\"\x00"):
            raise CodecError("bad character in link target at offset %d" % pos)
        link = Link(uri)
        pos = close + 1
        while pos < end and text[pos] == ";":
            pos += 1
            start = pos
            while pos < end and text[pos] in _PARAM_NAME:
                pos += 1
            name = text[start:pos]
            if not name:
                raise CodecError("empty attribute name at offset %d" % start)
            value = None
            if pos < end and text[pos] == "=":
                pos += 1
                if pos < end and text[pos] == '"':
                    pos += 1
                    chars = []
                    while True:
                        if pos >= end:
                            raise CodecError("unterminated quoted string")
                        c = text[pos]
                        if c == "\\" and pos + 1 < end:
                            chars.append(text[pos + 1])
                            pos += 2
                            continue
                        pos += 1
                        if c == '"':
                            break
                        chars.append(c)
                    value = "".join(chars)
                else:
                    start = pos
                    while pos < end and text[pos] in _TOKEN_CHARS:
                        pos += 1
                    value = text[start:pos]
                    if not value:
                        raise CodecError("empty attribute value at offset %d" % start)
            if name in link.params:
                raise CodecError("attribute %r repeated in <%s>" % (name, uri))
            link.params[name] = value
        links.append(link)
        if pos == end:
            return links
        if text[pos] != ",":
            raise CodecError("expected ',' or ';' at offset %d" % pos)
        pos += 1
