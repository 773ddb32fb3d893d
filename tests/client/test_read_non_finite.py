"""A whole-object or instance read in SenML-JSON of a Float that is inf/NaN (a float32 model's score can be) answers
4.06 with the reason, inside MicroPython; a notification takes the same path, so nothing escapes the client's loop."""

import json

from tinymlaas.devices import unixport


def test_whole_object_senml_json_read_of_nan_is_not_acceptable(tmp_path):
    cfg = {"server": "coap://127.0.0.1:9", "endpoint": "nf", "lifetime": 300, "data_dir": str(tmp_path / "flash"),
           "port": 0, "ack_timeout_ms": 2000}
    out = unixport.run(code=r"""
import json
import tinyml_device
from lwm2m import content, objects as ob


class Scores(ob.LwObject):
    oid = 33000
    resources = {0: (ob.FLOAT, "R"), 1: (ob.FLOAT, "R")}

    def read(self, iid, rid):
        return float('nan') if rid == 1 else 1.5


c = tinyml_device.build(json.loads(%r))
for ids in ((33000,), (33000, 0), (33000, 0, 0)):
    for fmt in (content.SENML_JSON, content.SENML_CBOR):
        try:
            print(ids, fmt, 'OK', len(c.encode_read(Scores(), ids, fmt)[1]))
        except ob.ResourceError as e:
            print(ids, fmt, 'ERR', hex(e.code), e.args[-1] if e.args else '')
""" % json.dumps(cfg), heap="512k").stdout.decode().splitlines()
    assert out[0].startswith("(33000,) 110 ERR 0x86") and "non-finite" in out[0], out
    assert out[2].startswith("(33000, 0) 110 ERR 0x86") and "non-finite" in out[2], out
    assert out[1].startswith("(33000,) 112 OK") and out[3].startswith("(33000, 0) 112 OK"), out
    assert out[4].startswith("(33000, 0, 0) 110 OK") and out[5].startswith("(33000, 0, 0) 112 OK"), out
