"""docs/tinyml-object.xml (read by the server) and the device's TinyML object table must agree: the resources every
device has (obj_tinyml.TinyML.resources) and those a model with a trainable head adds (lwm2m/learning.py
RESOURCES, 37-43), which the server must know to decode them."""

import json
import xml.etree.ElementTree as ET

from tinymlaas.lwm2m.objects.model import TINYML_XML, load_xml
from tinymlaas.paths import REPO

TYPES = {"s": "String", "i": "Integer", "o": "Opaque", "-": "", "b": "Boolean", "f": "Float", "t": "Time"}


def test_xml_matches_device_resources(mpy_run):
    root = ET.parse(REPO / "docs" / "tinyml-object.xml").getroot()
    obj = root.find("Object")
    assert obj.findtext("ObjectID") == "32770" and obj.findtext("ObjectURN") == "urn:oma:lwm2m:x:32770"
    xml = {int(i.get("ID")): (i.findtext("Operations"), i.findtext("Type") or "") for i in obj.iter("Item")}
    out = mpy_run("import json\nfrom lwm2m.obj_tinyml import TinyML\nfrom lwm2m import learning\n"
                  "print(json.dumps([TinyML.resources, learning.RESOURCES]))", heap="128k")
    always, with_head = json.loads(out)
    assert not set(always) & set(with_head)
    device = {int(k): (ops, TYPES[t]) for table in (always, with_head) for k, (t, ops) in table.items()}
    assert sorted(with_head, key=int) == [str(r) for r in range(37, 44)]
    assert device == xml


def test_server_model_types_the_learning_resources():
    res = next(o for o in load_xml(TINYML_XML) if o.id == 32770).resources
    assert [(res[r].name, res[r].operations, res[r].type) for r in range(37, 44)] == [
        ("Learn Sample", "W", "Opaque"), ("Label", "W", "Integer"), ("Samples", "R", "Integer"),
        ("Accuracy", "R", "Float"), ("Head", "RW", "Opaque"), ("Reset Head", "E", "none"),
        ("Learning", "RW", "Boolean")]
