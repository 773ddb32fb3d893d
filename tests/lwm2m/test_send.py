"""LwM2M Send on the server side as pure functions (lwm2m/send.py `check`): the exact bytes the MicroPython device
sends for an alarm, every refusal with its code, and a fuzz target (arbitrary and mutated payloads end in
`Refused` or typed values, never another exception; --fuzz-long: 100,000 inputs). The UDP path with the real
device is tests/e2e/test_anomaly.py."""

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinymlaas.lwm2m.objects import default_model
from tinymlaas.lwm2m.send import Refused, check

MODEL = default_model()
OBJECTS = ["/1/0", "/3/0", "/5/0", "/32770/0"]
# lwm2m_client/lwm2m/senml.py encode_cbor("/32770/0/", [("11", "vib-ad"), ("17", 7), ("33", 0.5),
# ("34", 0.03125), ("35", 2)]) in MicroPython 1.29: what an alarm's Send carries
DEVICE_ALARM = bytes.fromhex("85a30062313121692f33323737302f302f03667669622d6164a2006231370207a20062333302fb3fe000"
                             "0000000000a20062333402fb3fa0000000000000a2006233350202")


def test_the_devices_alarm_bytes():
    assert cbor2.loads(DEVICE_ALARM)[0] == {-2: "/32770/0/", 0: "11", 3: "vib-ad"}
    assert check(112, DEVICE_ALARM, MODEL, OBJECTS) == {
        (32770, 0, 11): "vib-ad", (32770, 0, 17): 7, (32770, 0, 33): 0.5, (32770, 0, 34): 0.03125,
        (32770, 0, 35): 2}
    senml_json = b'[{"bn":"/32770/0/","n":"35","v":3}]'
    assert check(110, senml_json, MODEL, ["/32770"]) == {(32770, 0, 35): 3}   # an object-level link is enough


@pytest.mark.parametrize("fmt, payload, objects, code, reason", [
    (None, DEVICE_ALARM, OBJECTS, "4.15", "not Content-Format None"),
    (0, b"3", OBJECTS, "4.15", "SenML-CBOR (112) or SenML-JSON (110)"),
    (11542, DEVICE_ALARM, OBJECTS, "4.15", "not Content-Format 11542"),
    (112, DEVICE_ALARM + bytes(1024), OBJECTS, "4.13", "one datagram"),
    (112, b"", OBJECTS, "4.00", "malformed Send"),
    (112, DEVICE_ALARM[:-1], OBJECTS, "4.00", "does not parse"),
    (112, cbor2.dumps([]), OBJECTS, "4.00", "no values"),
    (112, cbor2.dumps({0: "35"}), OBJECTS, "4.00", "must be an array"),
    (112, cbor2.dumps([{-2: "/32770/0/", 0: "35", 3: "two"}]), OBJECTS, "4.00", "malformed Send"),   # type
    (112, cbor2.dumps([{-2: "/32770/0/", 0: "35"}]), OBJECTS, "4.00", "exactly one value"),
    (112, cbor2.dumps([{-2: "/32770/0", 0: ""}] + [{0: "x", 2: 1}]), OBJECTS, "4.00", "malformed Send"),
    (112, DEVICE_ALARM, ["/1/0", "/3/0"], "4.00", "/32770/0/11 is not in an object instance the device registered"),
    (112, cbor2.dumps([{-2: "/32770/1/", 0: "35", 2: 1}]), OBJECTS, "4.00", "not in an object instance"),
])
def test_refusals(fmt, payload, objects, code, reason):
    with pytest.raises(Refused) as e:
        check(fmt, payload, MODEL, objects)
    assert e.value.code == code and reason in e.value.reason, e.value.reason


def test_fuzz_send_check(request):
    n = 100_000 if request.config.getoption("--fuzz-long") else 300
    seen = {"n": 0, "taken": 0}

    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.one_of(st.binary(max_size=200),
                          st.tuples(st.integers(0, len(DEVICE_ALARM) - 1), st.integers(0, 255),
                                    st.booleans()).map(mutate)),
           fmt=st.sampled_from([112, 112, 110]))
    def run(data, fmt):
        seen["n"] += 1
        try:
            values = check(fmt, data, MODEL, OBJECTS)
        except Refused as e:
            assert e.code in ("4.00", "4.13", "4.15") and e.reason
            return
        seen["taken"] += 1
        assert values and all(p[:2] == (32770, 0) for p in values)

    run()
    print("fuzzed send.check with %d payloads, %d taken" % (seen["n"], seen["taken"]))


def mutate(args):
    """The device's alarm with one byte set (or cut there)."""
    at, value, cut = args
    data = bytearray(DEVICE_ALARM)
    if cut:
        return bytes(data[:at])
    data[at] = value
    return bytes(data)
