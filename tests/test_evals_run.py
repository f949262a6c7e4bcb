"""`caseplan eval run | label | harvest` end to end with the real embedding and GGUF models:
the Bitext suite with pass^3, a broken template caught by --compare, and the flywheel from a
demo escalation to a passing case."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.cli.run_cmd import DEMO_TICKETS
from agent.evals.harvest import harvest
from agent.evals.outcomes import record_outcome
from agent.evals.suites import evaldata_path
from agent.runner import Runner
from agent.runtime import Runtime
from agent.settings import load_settings
from agent.tickets import parse_ticket
from tests.conftest import make_settings
from tools.sandbox.helpdesk import open_ticket
from tools.sandbox.seed import seed_demo

pytestmark = pytest.mark.slow
EVALDATA = evaldata_path(load_settings())


def _invoke(args: list[str], data_dir: Path, **env: str):
    result = CliRunner().invoke(app, args, env={"CASEPLAN_DATA_DIR": str(data_dir), "CASEPLAN__EVALS__DATA_DIR": str(EVALDATA), **env})
    return result


@pytest.mark.skipif(not EVALDATA.exists(), reason=f"public eval data not found at {EVALDATA} (set CASEPLAN__EVALS__DATA_DIR)")
def test_bitext_suite_with_k3_reports_pass3_next_to_pass1(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = _invoke(["eval", "run", "bitext-dev", "--k", "3", "--limit", "4", "--out", str(out)], tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert "pass^1" in result.output and "pass^3" in result.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["metrics"]["pass_hat"]) == {"1", "2", "3"}
    assert report["metrics"]["runs"] == 12 and len(report["runs"]) == 12
    assert report["metrics"]["route_accuracy"] is not None
    assert report["metrics"]["pass_hat"]["3"] <= report["metrics"]["pass_hat"]["1"]
    markdown = (out / "report.md").read_text()
    assert "| pass^1 |" in markdown and "| pass^3 |" in markdown
    assert (out / "pass_k.png").read_bytes()[:4] == b"\x89PNG" and (out / "checks.png").stat().st_size > 0
    assert not list((tmp_path / "data" / "evals" / "work").glob("*")), "the eval's own record and sandbox are removed"


BROKEN_STATUS = """\
name: ticket_status
version: 2
description: Deliberately broken - closes the ticket the customer asks about.
examples:
  - what is the status of my ticket
  - any update on ticket 1234?
  - status of case 1001 please
slots:
  ticket_id:
    type: ticket_id
    sources: [pattern, ticket.ticket_id]
steps:
  - id: lookup_ticket
    tool: ticket_lookup
    args:
      ticket_id: $slots.ticket_id
  - id: close_it
    tool: ticket_update
    args:
      ticket_id: $steps.lookup_ticket.output.ticket_id
      status: solved
reply:
  kind: text
  text: Ticket {steps.lookup_ticket.output.ticket_id} is {steps.close_it.output.status}.
"""


def test_a_broken_template_makes_compare_exit_non_zero_naming_the_cases(tmp_path: Path) -> None:
    cases = tmp_path / "status.jsonl"
    rows = [
        {"id": "status-1001", "ticket": {"text": "status of case 1001 please", "requester_email": "omar@example.com"},
         "expect": {"template": "ticket_status", "tool_calls": [{"tool": "ticket_lookup"}, {"tool": "ticket_lookup", "args": {"ticket_id": "1001"}}],
                    "forbidden_tools": ["ticket_update"], "criteria": ["completed"]}},
        {"id": "human-please", "ticket": {"text": "I want to talk to a human"}, "expect": {"template": "escalate"}},
        {"id": "bad-row", "ticket": {"text": "refund me"}, "expect": {"template": "refund_order"}},
    ]
    cases.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    data = tmp_path / "data"
    first = _invoke(["eval", "run", str(cases), "--k", "2", "--out", str(tmp_path / "base")], data)
    assert first.exit_code == 0, first.output
    assert "invalid: status.jsonl:3 (bad-row): unknown template 'refund_order' in expect.template" in first.output
    baseline = json.loads((tmp_path / "base" / "report.json").read_text())
    assert [row["where"] for row in baseline["invalid"]] == ["status.jsonl:3 (bad-row)"]
    assert {case["id"]: case["pass_rate"] for case in baseline["cases"]} == {"status-1001": 1.0, "human-please": 1.0}

    broken = tmp_path / "broken_templates"
    broken.mkdir()
    (broken / "ticket_status.yaml").write_text(BROKEN_STATUS)
    second = _invoke(
        ["eval", "run", str(cases), "--k", "2", "--out", str(tmp_path / "after"), "--compare", str(tmp_path / "base" / "report.json")],
        data,
        CASEPLAN__CATALOGUE__PATHS=json.dumps([str(broken)]),
    )
    assert second.exit_code == 1, second.output
    assert "REGRESSED" in second.output
    assert "regressed case status-1001: pass rate 1.00 -> 0.00" in second.output
    assert "human-please" not in second.output.split("REGRESSED", 1)[1]
    after = json.loads((tmp_path / "after" / "report.json").read_text())
    assert [c["name"] for c in after["comparison"]["regressed_cases"]] == ["status-1001"]
    assert "forbidden_tools" in next(c for c in after["cases"] if c["id"] == "status-1001")["failed_checks"]

    only_bad = tmp_path / "only_bad.jsonl"
    only_bad.write_text(json.dumps(rows[2]) + "\n")
    nothing = _invoke(["eval", "run", str(only_bad)], data)
    assert nothing.exit_code == 2 and "no valid cases to run" in nothing.output
    unknown = _invoke(["eval", "run", "no-such-suite"], data)
    assert unknown.exit_code == 2 and "not a built-in suite" in unknown.output

    bad_baseline = tmp_path / "not_a_report.json"
    bad_baseline.write_text("{}")
    refused = _invoke(["eval", "run", str(cases), "--compare", str(bad_baseline)], data)
    assert refused.exit_code == 2 and "not a caseplan eval report" in refused.output


def test_a_resolved_demo_escalation_becomes_a_case_that_passes(tmp_path: Path, runtime: Runtime, database_env: dict[str, str]) -> None:
    fields = DEMO_TICKETS[5]  # "I want to speak to a manager": the demo escalates it
    assert "manager" in fields["text"]
    ticket = parse_ticket(fields, 20000)
    ticket = ticket.model_copy(update={"ticket_id": open_ticket(runtime.sandbox, ticket.text[:60], ticket.text, ticket.requester_email)})
    run = Runner(runtime).submit(ticket)
    assert run.status == "escalated"
    data = runtime.settings.data_path
    today = datetime.now(UTC).date().isoformat()

    nothing = _invoke(["eval", "harvest", "--since", today, "--out", str(tmp_path / "h.jsonl")], data, **database_env)
    assert nothing.exit_code == 0 and "harvested 0 new case(s)" in nothing.output  # open, unlabelled: not yet

    labelled = _invoke(["eval", "label", run.run_id, "--template", "escalate", "--reason", "customer_request", "--by", "alice",
                        "--forbid", "ticket_update", "--note", "asked for a manager; handed over"], data, **database_env)
    assert labelled.exit_code == 0, labelled.output
    bad_label = _invoke(["eval", "label", run.run_id, "--template", "refund_order", "--by", "alice"], data, **database_env)
    assert bad_label.exit_code == 2 and "unknown template 'refund_order'" in bad_label.output

    harvested = _invoke(["eval", "harvest", "--since", today, "--out", str(tmp_path / "h.jsonl")], data, **database_env)
    assert harvested.exit_code == 0 and "harvested 1 new case(s)" in harvested.output, harvested.output
    again = _invoke(["eval", "harvest", "--since", today, "--out", str(tmp_path / "h.jsonl")], data, **database_env)
    assert "harvested 0 new case(s)" in again.output and "1 duplicate(s)" in again.output
    case = json.loads((tmp_path / "h.jsonl").read_text().splitlines()[0])
    assert case["expect"] == {"template": "escalate", "escalation_reason": "customer_request", "forbidden_tools": ["ticket_update"]}
    assert "omar@example.com" not in json.dumps(case) and case["ticket"]["requester_email"].endswith("@example.invalid")

    result = _invoke(["eval", "run", str(tmp_path / "h.jsonl"), "--out", str(tmp_path / "r")], tmp_path / "eval-data")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["cases"][0]["pass_rate"] == 1.0 and report["metrics"]["escalation_recall"] == 1.0
    later = _invoke(["eval", "harvest", "--since", "2999-01-01", "--out", str(tmp_path / "h2.jsonl")], data, **database_env)
    assert "harvested 0 new case(s)" in later.output
    edited = tmp_path / "edited.jsonl"  # a hand-edited file whose last line has no newline
    edited.write_text('{"id": "mine", "ticket": {"text": "hi"}, "expect": {"template": "escalate"}}')
    for _ in range(2):
        assert _invoke(["eval", "harvest", "--since", today, "--out", str(edited)], data, **database_env).exit_code == 0
    rows = [json.loads(line) for line in edited.read_text().splitlines()]  # every line still a case
    assert [row["id"] for row in rows] == ["mine", case["id"]]  # and the second harvest knew the first's


def test_a_rejected_approval_with_a_recorded_outcome_is_harvested(tmp_path: Path, embedder, local_model, database_env: dict[str, str]) -> None:
    policy = tmp_path / "approve_resets.yaml"
    policy.write_text("version: 1\nrules:\n  - {id: reset-approval, tools: [password_reset], decision: needs_approval, reason: a person confirms}\n")
    settings = make_settings(tmp_path / "data", CASEPLAN__POLICIES__FILES=json.dumps([str(policy)]), **database_env)
    built = Runtime.build(settings, embedder=embedder, local_model=local_model)
    seed_demo(built.sandbox)
    runner = Runner(built)
    pending = runner.submit(parse_ticket({"text": "I forgot my password", "requester_email": "jane@example.com", "ticket_id": "1003"}, 20000))
    assert pending.status == "waiting_approval", pending
    rejected = runner.answer_approval(pending.run_id, approved=False, by="bob", note="the account owner asked us not to")
    assert rejected.status == "escalated"
    assert harvest(built.engine, datetime(2000, 1, 1, tzinfo=UTC), set()).unlabelled == [pending.run_id]
    record_outcome(built.engine, pending.run_id, "escalate", "bob", forbidden_tools=["password_reset"], resolve=False)
    found = harvest(built.engine, datetime(2000, 1, 1, tzinfo=UTC), set())
    assert [case.expect.forbidden_tools for case in found.cases] == [["password_reset"]]
    assert found.cases[0].tags == ["harvested", "approval"] and found.cases[0].ticket.text == "I forgot my password"
    assert found.unlabelled == []
    built.engine.dispose()
