"""`caseplan plans validate` rejects each kind of broken template, naming file, step and problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app

GOOD = """
name: demo_reset
version: 1
description: test template
slots:
  email: {type: email, sources: [pattern]}
  ticket: {type: ticket_id, sources: [ticket.ticket_id]}
steps:
  - id: lookup
    tool: account_lookup
    args: {email: $slots.email}
  - id: verify
    tool: verify_identity
    args: {user_id: $steps.lookup.output.user_id, requester_email: $slots.email}
  - id: reset
    tool: password_reset
    args: {user_id: $steps.lookup.output.user_id, verification_id: $steps.verify.output.verification_id}
"""

BROKEN = {
    "unknown_tool": (
        GOOD.replace("tool: password_reset", "tool: wipe_account"),
        "reset",
        "unknown tool 'wipe_account'",
    ),
    "bad_argument_type": (
        GOOD.replace("args: {email: $slots.email}", "args: {email: 12345}"),
        "lookup",
        "argument 'email' fails account_lookup input",
    ),
    "unknown_argument": (
        GOOD.replace("args: {email: $slots.email}", "args: {email: $slots.email, password: hunter2}"),
        "lookup",
        "argument 'password' is not accepted by tool 'account_lookup'",
    ),
    "missing_required_argument": (
        GOOD.replace("requester_email: $slots.email}", "}").replace("user_id: $steps.lookup.output.user_id, }", "user_id: $steps.lookup.output.user_id}"),
        "verify",
        "missing required argument 'requester_email'",
    ),
    "missing_step_reference": (
        GOOD.replace("verification_id: $steps.verify.output.verification_id", "verification_id: $steps.verfy.output.verification_id"),
        "reset",
        "references missing step 'verfy'",
    ),
    "later_step_reference": (
        GOOD.replace("args: {email: $slots.email}", "args: {email: $steps.extra.output.requester_email}")
        + "  - id: extra\n    tool: ticket_lookup\n    args: {ticket_id: '1001'}\n",
        "lookup",
        "references later step 'extra'",
    ),
    "cycle": (
        GOOD.replace("args: {email: $slots.email}", "args: {user_id: $steps.reset.output.user_id}").replace(
            "args: {user_id: $steps.lookup.output.user_id, verification_id",
            "args: {user_id: $steps.lookup.output.user_id, verification_id",
        ),
        "lookup",
        "cycle between steps lookup -> reset -> lookup",
    ),
    "missing_output_field": (
        GOOD.replace("$steps.verify.output.verification_id", "$steps.verify.output.token"),
        "reset",
        "output of step 'verify' (verify_identity) has no field 'token'",
    ),
    "undeclared_slot": (
        GOOD.replace("args: {email: $slots.email}", "args: {email: $slots.mail}"),
        "lookup",
        "references undeclared slot 'mail'",
    ),
    "malformed_reference": (
        GOOD.replace("$steps.lookup.output.user_id, requester", "$steps.lookup.user_id, requester"),
        "verify",
        "malformed reference '$steps.lookup.user_id'",
    ),
    "only_if_undeclared_slot": (
        GOOD.replace("    tool: account_lookup\n", "    tool: account_lookup\n    only_if: mail\n"),
        "lookup",
        "only_if names undeclared slot 'mail'",
    ),
    "only_if_required_slot": (
        GOOD.replace("    tool: account_lookup\n", "    tool: account_lookup\n    only_if: email\n"),
        "lookup",
        "only_if names required slot 'email'",
    ),
    "reference_to_a_step_that_can_be_left_out": (
        GOOD.replace("email: {type: email, sources: [pattern]}", "email: {type: email, required: false, sources: [pattern]}").replace(
            "    tool: account_lookup\n", "    tool: account_lookup\n    only_if: email\n"
        ),
        "verify",
        "references step 'lookup', which is left out when slot 'email' is empty",
    ),
    "type_mismatch": (
        GOOD.replace("verification_id: $steps.verify.output.verification_id", "verification_id: $steps.verify.output.verified"),
        "reset",
        "expects string but $steps.verify.output.verified is boolean",
    ),
}


@pytest.fixture
def cli(tmp_path: Path) -> tuple[CliRunner, dict[str, str]]:
    return CliRunner(), {"CASEPLAN_DATA_DIR": str(tmp_path / "data")}


def test_good_template_validates(tmp_path, cli):
    runner, env = cli
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    result = runner.invoke(app, ["plans", "validate", str(path)], env=env)
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_template_is_rejected_naming_file_step_and_problem(kind, tmp_path, cli):
    runner, env = cli
    text, step, problem = BROKEN[kind]
    assert text != GOOD, "the mutation must change the template"
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["plans", "validate", str(path)], env=env)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert any(str(path) in line and f"step {step!r}" in line and problem in line for line in errors), result.stderr


def test_cycle_is_reported_as_a_cycle_not_as_a_forward_reference(tmp_path, cli):
    runner, env = cli
    path = tmp_path / "cycle.yaml"
    path.write_text(BROKEN["cycle"][0])
    result = runner.invoke(app, ["plans", "validate", str(path)], env=env)
    assert "cycle between steps" in result.stderr
    assert "references later step" not in result.stderr


def test_yaml_syntax_and_schema_errors_name_the_file(tmp_path, cli):
    runner, env = cli
    (tmp_path / "syntax.yaml").write_text("name: [unclosed\n")
    (tmp_path / "schema.yaml").write_text(
        textwrap.dedent(
            """
            name: typo
            version: 1
            description: has a typo
            stpes: []
            steps:
              - id: one
                tool: ticket_lookup
                argz: {ticket_id: "1"}
            """
        )
    )
    result = runner.invoke(app, ["plans", "validate", str(tmp_path)], env=env)
    assert result.exit_code == 2
    assert f"{tmp_path / 'syntax.yaml'}: invalid YAML (expected ',' or ']'" in result.stderr and "at line 2)" in result.stderr
    assert f"{tmp_path / 'schema.yaml'}: stpes: Extra inputs are not permitted" in result.stderr
    assert f"{tmp_path / 'schema.yaml'}: step 'one': argz: Extra inputs are not permitted" in result.stderr


def test_a_not_when_pattern_that_is_not_a_regular_expression_is_named(tmp_path, cli):
    runner, env = cli
    (tmp_path / "contrary.yaml").write_text(GOOD + "not_when: ['(unclosed']\n")
    result = runner.invoke(app, ["plans", "validate", str(tmp_path)], env=env)
    assert result.exit_code == 2
    assert f"{tmp_path / 'contrary.yaml'}: not_when: Value error, not_when pattern '(unclosed' is not a regular expression" in result.stderr


def test_missing_path_and_packaged_catalogue(tmp_path, cli):
    runner, env = cli
    missing = runner.invoke(app, ["plans", "validate", str(tmp_path / "nope.yaml")], env=env)
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    packaged = runner.invoke(app, ["plans", "validate"], env=env)
    assert packaged.exit_code == 0
    for name in ("password_reset", "ticket_status", "knowledge_answer", "close_ticket", "escalate"):
        assert f"({name} v" in packaged.output
