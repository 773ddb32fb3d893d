"""docs/cli.md is the parsers' own help; regenerate it with `python -m tinymlaas.cli_reference > docs/cli.md`."""

from tinymlaas.cli_reference import generate
from tinymlaas.paths import REPO


def test_cli_reference_is_current():
    assert (REPO / "docs" / "cli.md").read_text() == generate(), \
        "docs/cli.md is stale: python -m tinymlaas.cli_reference > docs/cli.md"


def test_every_command_documents_itself():
    text = generate()
    for command in ("compile", "verify", "models add", "explain", "deploy", "deployments", "serve", "devices",
                    "device emulate", "emulate", "demo"):
        assert "## `tinymlaas %s`" % command in text
