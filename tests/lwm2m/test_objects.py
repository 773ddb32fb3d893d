"""Object model: the OMA object-XML loader, the built-in objects, and the TinyML XML taking precedence."""

import pytest

from tinymlaas.lwm2m import codecs as C
from tinymlaas.lwm2m.objects import default_model, load_xml
from tinymlaas.lwm2m.objects.model import ObjectXMLError

XML = """<?xml version="1.0" encoding="utf-8"?>
<LWM2M>
  <Object ObjectType="MODefinition">
    <Name>TinyML</Name><ObjectID>32770</ObjectID><ObjectVersion>1.0</ObjectVersion>
    <MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>
    <Resources>
      <Item ID="0"><Name>Free Heap</Name><Operations>R</Operations><MultipleInstances>Single</MultipleInstances>
        <Mandatory>Mandatory</Mandatory><Type>Integer</Type></Item>
      <Item ID="10"><Name>Supported Ops</Name><Operations>R</Operations><MultipleInstances>Multiple</MultipleInstances>
        <Mandatory>Mandatory</Mandatory><Type>String</Type></Item>
      <Item ID="19"><Name>Self Test</Name><Operations>E</Operations><MultipleInstances>Single</MultipleInstances>
        <Mandatory>Optional</Mandatory><Type></Type></Item>
    </Resources>
  </Object>
</LWM2M>
"""


def test_load_oma_xml():
    [obj] = load_xml(XML)
    assert obj.id == 32770 and not obj.multiple and obj.version == "1.0"
    assert obj.resources[0].type == "Integer" and obj.resources[0].readable and not obj.resources[0].writable
    assert obj.resources[10].multiple and obj.resources[19].executable and obj.resources[19].type == "none"


def test_xml_wins_over_builtin_fallback(tmp_path):
    p = tmp_path / "tinyml-object.xml"
    p.write_text(XML)
    m = default_model(p)
    assert m.is_multiple((32770, 0, 10)) and m.resource((32770, 0, 1)) is None
    # Typing follows the XML: resource 0 is an Integer, so a TLV value decodes to int.
    assert C.decode(C.TLV, (32770, 0, 0), bytes.fromhex("C1002A"), m) == {(32770, 0, 0): 42}
    fallback = default_model(tmp_path / "absent.xml")
    assert fallback.resource((32770, 0, 13)).name == "Model SHA256"


@pytest.mark.parametrize("bad", ["<LWM2M>", "<LWM2M></LWM2M>",
                                 "<LWM2M><Object><ObjectID>x</ObjectID></Object></LWM2M>",
                                 XML.replace("<Type>Integer</Type>", "<Type>Int</Type>")])
def test_bad_xml_is_rejected(bad):
    with pytest.raises(ObjectXMLError):
        load_xml(bad)


def test_builtin_objects():
    m = default_model(None)
    assert m.type_of((3, 0, 13)) == "Time" and m.is_multiple((3, 0, 11)) and m.resource((3, 0, 4)).executable
    assert m.type_of((5, 0, 0)) == "Opaque" and m.resource((5, 0, 1)).writable
    assert m.object(0).multiple and m.type_of((1, 0, 1)) == "Integer"
