"""Property tests: every value the object model allows survives encode -> decode in every data format, and
arbitrary bytes never make a decoder raise anything but CodecError (the fuzz target; --fuzz-long runs it at
>= 100,000 inputs per format)."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinymlaas.lwm2m import codecs as C
from tinymlaas.lwm2m.codecs import linkformat
from tinymlaas.lwm2m.objects import Model, ObjectDef, ResourceDef
from tinymlaas.lwm2m import values as V

# A synthetic object with one resource of each type, single and multiple, so round trips cover every type.
TYPES = [V.STRING, V.INTEGER, V.UNSIGNED, V.FLOAT, V.BOOLEAN, V.OPAQUE, V.TIME, V.OBJLNK]
OBJ = ObjectDef(40000, "all-types", True, False)
for i, t in enumerate(TYPES):
    OBJ.resources[i] = ResourceDef(i, t, "RW", False, False, t)
    OBJ.resources[100 + i] = ResourceDef(100 + i, t + "s", "RW", True, False, t)
MODEL = Model([OBJ])

VALUE = {
    V.STRING: st.text(max_size=40),
    V.INTEGER: st.integers(V.INT64_MIN, V.INT64_MAX),
    V.TIME: st.integers(V.INT64_MIN, V.INT64_MAX),
    V.UNSIGNED: st.integers(0, V.UINT64_MAX),
    V.FLOAT: st.floats(allow_nan=False, allow_infinity=False),
    V.BOOLEAN: st.booleans(),
    V.OPAQUE: st.binary(max_size=300),
    V.OBJLNK: st.builds(V.ObjLink, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
}


@st.composite
def instance_values(draw):
    iids = draw(st.lists(st.integers(0, 300), min_size=1, max_size=3, unique=True))
    out = {}
    for iid in iids:
        for i in draw(st.lists(st.integers(0, len(TYPES) - 1), max_size=len(TYPES), unique=True)):
            out[(40000, iid, i)] = draw(VALUE[TYPES[i]])
        for i in draw(st.lists(st.integers(0, len(TYPES) - 1), max_size=3, unique=True)):
            for riid in draw(st.lists(st.integers(0, 70000 % 65535), min_size=1, max_size=3, unique=True)):
                out[(40000, iid, 100 + i, riid)] = draw(VALUE[TYPES[i]])
    return out


def _same(a, b):
    return a.keys() == b.keys() and all(
        (isinstance(a[k], float) and math.isclose(a[k], b[k], rel_tol=0, abs_tol=0)) or a[k] == b[k] for k in a
    )


@pytest.mark.parametrize("fmt", [C.TLV, C.SENML_JSON, C.SENML_CBOR])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=instance_values())
def test_object_roundtrip(fmt, values):
    payload = C.encode(fmt, (40000,), values, MODEL)
    assert _same(C.decode(fmt, (40000,), payload, MODEL), values)


@pytest.mark.parametrize("fmt", [C.TEXT, C.TLV, C.SENML_JSON, C.SENML_CBOR])
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_single_resource_roundtrip(fmt, data):
    i = data.draw(st.integers(0, len(TYPES) - 1))
    if fmt == C.TEXT and TYPES[i] == V.OPAQUE:
        i = 0
    path = (40000, 0, i)
    value = data.draw(VALUE[TYPES[i]])
    payload = C.encode(fmt, path, {path: value}, MODEL)
    assert _same(C.decode(fmt, path, payload, MODEL), {path: value})


link_value = st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20))


@settings(max_examples=100, deadline=None)
@given(links=st.lists(st.builds(linkformat.Link, st.from_regex(r"/[0-9]{1,5}(/[0-9]{1,5}){0,3}", fullmatch=True),
                                st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), link_value, max_size=3)),
                      max_size=6))
def test_link_format_roundtrip(links):
    assert linkformat.decode(linkformat.encode(links)) == links


# ---- fuzz: arbitrary bytes, and mutations of valid payloads --------------------------------------------------

SEEDS = {
    C.TLV: bytes.fromhex("08002AC800144F70656E204D6F62696C6520416C6C69616E63658606410001410105C10964C40D5182428F"),
    C.SENML_JSON: b'[{"bn":"/3/0/","n":"0","vs":"x"},{"n":"6/0","v":1},{"n":"9","v":1.5,"vd":"AA"}]',
    C.SENML_CBOR: bytes.fromhex("82A321652F332F302F0061300362616"
                                "2A20061390218 64".replace(" ", "")),
    C.LINK_FORMAT: b'</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>;ver=1.1,</5/0>',
}
FUZZ_MODEL = None


def _decode_any(fmt, base, payload):
    from tinymlaas.lwm2m.objects import default_model

    global FUZZ_MODEL
    FUZZ_MODEL = FUZZ_MODEL or default_model()
    try:
        if fmt == C.LINK_FORMAT:
            linkformat.decode(payload)
        else:
            C.decode(fmt, base, payload, FUZZ_MODEL)
    except C.CodecError:
        pass


@st.composite
def fuzz_input(draw, fmt):
    seed = SEEDS[fmt]
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    b = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 2))
        pos = draw(st.integers(0, len(b)))
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = draw(st.integers(0, 255))
        elif op == 1:
            b[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        else:
            del b[pos : pos + draw(st.integers(1, 8))]
    return bytes(b)


FUZZ_BASES = [(3,), (3, 0), (3, 0, 6), (3, 0, 6, 0), (5, 0, 0)]


@pytest.mark.parametrize("fmt", [C.TLV, C.SENML_JSON, C.SENML_CBOR, C.LINK_FORMAT])
def test_fuzz_decoders_raise_only_codec_error(fmt, request):
    """Short by default (fast suite); `--fuzz-long` runs 100,000 inputs per format."""
    n = 100_000 if request.config.getoption("--fuzz-long") else 300
    counter = {"n": 0}

    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(payload=fuzz_input(fmt), base=st.sampled_from(FUZZ_BASES))
    def run(payload, base):
        counter["n"] += 1
        _decode_any(fmt, base, payload)

    run()
    print("fuzzed %s with %d inputs" % (C.NAMES[fmt], counter["n"]))
    assert counter["n"] >= min(n, 100)
