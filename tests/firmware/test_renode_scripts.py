"""The Renode suite cannot run here (Renode is not installable), so CI checks what it can without Renode: Robot
Framework's own parser reads renode/firmware.robot without errors, every host command it runs parses with the
real argument parser of `python -m tinymlaas.devices.renode`, and the .resc defines what the suite sets."""

import re
import shlex

from robot.api import get_model
from robot.api.parsing import ModelVisitor
import robot.running

from tinymlaas.devices import renode
from tinymlaas.paths import REPO

ROBOT = REPO / "renode" / "firmware.robot"
RESC = REPO / "renode" / "stm32f4.resc"


def test_robot_suite_parses_without_errors():
    errors = []

    class Errors(ModelVisitor):
        def generic_visit(self, node):
            errors.extend(getattr(node, "errors", ()) or ())
            super().generic_visit(node)

    Errors().visit(get_model(str(ROBOT)))
    assert errors == []
    names = [t.name for t in robot.running.TestSuiteBuilder().build(str(ROBOT)).tests]
    assert "Should Keep The Model In Flash Across A Reset" in names and len(names) >= 5


def test_every_host_check_in_the_suite_is_a_valid_command_line():
    text = ROBOT.read_text()
    calls = re.findall(r"tinymlaas\.devices\.renode\s+(check.*?)(?:cwd=|\n\S)", text, re.S)
    assert len(calls) >= 5
    for call in calls:
        words = [w for w in shlex.split(call.replace("...", " ")) if w]
        words = [w.replace("${PORT}", "3456").replace("${model}", "kws") for w in words]
        args = renode.parse_args(words)
        assert args.port == 3456 and args.model in ("kws", "vww", "ic", "ad", "sww")


def test_resc_defines_what_the_suite_sets_and_loads_the_stm32_elf():
    resc = RESC.read_text()
    assert "$bin?=@build/firmware/stm32f4/tinymlaas.elf" in resc
    assert "$port?=" in resc and "sysbus.usart2" in resc
    assert "stm32f4_discovery" in resc
    suite = ROBOT.read_text()
    for var in re.findall(r"Execute Command\s+\$(\w+)=", suite):
        assert "$%s?=" % var in resc, var
