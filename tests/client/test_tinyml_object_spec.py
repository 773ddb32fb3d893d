"""docs/tinyml-object.xml (read by the server) and the device's TinyML object table must agree."""

import json
import xml.etree.ElementTree as ET

from tinymlaas.paths import REPO

TYPES = {"s": "String", "i": "Integer", "o": "Opaque", "-": "", "b": "Boolean", "f": "Float", "t": "Time"}


def test_xml_matches_device_resources(mpy_run):
    root = ET.parse(REPO / "docs" / "tinyml-object.xml").getroot()
    obj = root.find("Object")
    assert obj.findtext("ObjectID") == "32770" and obj.findtext("ObjectURN") == "urn:oma:lwm2m:x:32770"
    xml = {int(i.get("ID")): (i.findtext("Operations"), i.findtext("Type") or "") for i in obj.iter("Item")}
    out = mpy_run("import json\nfrom lwm2m.obj_tinyml import TinyML\n"
                  "print(json.dumps({k: v for k, v in TinyML.resources.items()}))", heap="128k")
    device = {int(k): (ops, TYPES[t]) for k, (t, ops) in json.loads(out).items()}
    assert device == xml
