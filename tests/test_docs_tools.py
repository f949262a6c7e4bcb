"""The JSON examples in docs/tools.md hold: each valid one passes the schema that
`caseplan tools schema` prints (and the Pydantic model), each `invalid` one is refused by both."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from agent.cli import app
from agent.settings import load_settings
from agent.tooling import registry_from_settings

REPO = Path(__file__).resolve().parent.parent
CASEPLAN = str(Path(sys.executable).parent / "caseplan")
EXAMPLE = re.compile(r"```json tool=(?P<tool>\w+) part=(?P<part>input|output)(?P<invalid> invalid)?\n(?P<body>.*?)\n```", re.DOTALL)
EXAMPLES = [match.groupdict() for match in EXAMPLE.finditer((REPO / "docs" / "tools.md").read_text(encoding="utf-8"))]


@cache
def printed_schema(tool: str, part: str, data_dir: str) -> dict:
    """What the CLI prints; password_reset through a real `caseplan` process, as a user runs it."""
    args = ["tools", "schema", tool, "--part", part]
    if tool == "password_reset":
        proc = subprocess.run([CASEPLAN, *args], capture_output=True, text=True, timeout=120, env={"CASEPLAN_DATA_DIR": data_dir, "PATH": ""})
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)
    result = CliRunner().invoke(app, args, env={"CASEPLAN_DATA_DIR": data_dir})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("docs"))


def test_the_docs_have_examples_for_every_contract():
    documented = {(e["tool"], e["part"], bool(e["invalid"])) for e in EXAMPLES}
    for tool in ("ticket_lookup", "ticket_update", "account_lookup", "verify_identity", "password_reset", "escalate_to_human"):
        assert (tool, "input", False) in documented and (tool, "output", False) in documented, tool
    assert sum(1 for e in EXAMPLES if e["tool"] == "password_reset" and e["invalid"]) >= 3


@pytest.mark.parametrize(
    "example", EXAMPLES, ids=[f"{n}-{e['tool']}-{e['part']}{'-invalid' if e['invalid'] else ''}" for n, e in enumerate(EXAMPLES, 1)]
)
def test_example_against_the_printed_schema_and_the_model(example, data_dir):
    schema = printed_schema(example["tool"], example["part"], data_dir)
    assert schema["$schema"].endswith("/draft/2020-12/schema")
    validator = jsonschema.validators.validator_for(schema)(schema)
    validator.check_schema(schema)
    instance = json.loads(example["body"])
    tool = registry_from_settings(load_settings(env={"CASEPLAN_DATA_DIR": data_dir})).get(example["tool"])
    model = tool.input_model if example["part"] == "input" else tool.output_model
    if example["invalid"]:
        assert list(validator.iter_errors(instance)), "the schema must refuse this documented counter-example"
        with pytest.raises(ValidationError):
            model.model_validate_json(example["body"])
    else:
        validator.validate(instance)
        model.model_validate_json(example["body"])
