"""Eval building blocks without models: case files and their bad rows, scoring, pass^k,
comparison with a baseline, PII pseudonyms, and the built-in suites' coverage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.evals.cases import CaseFileError, EvalCase, load_case_file
from agent.evals.checks import CheckResult, score
from agent.evals.criteria import Observation, ToolCallRecord
from agent.evals.harvest import pseudonymise
from agent.evals.metrics import CaseSummary, Metrics, pass_hat, summarise
from agent.evals.report import Report, compare
from agent.evals.runner import CaseRun
from agent.evals.suites import evaldata_path, load_suite, stratified
from agent.settings import load_settings
from agent.tooling import registry_from_settings
from plans.catalogue import load_catalogue

TEMPLATES = ["close_ticket", "escalate", "knowledge_answer", "password_reset", "ticket_status"]
TOOLS = ["account_lookup", "escalate_to_human", "knowledge_search", "password_reset", "ticket_lookup", "ticket_update", "verify_identity"]
SETTINGS = load_settings()
EVALDATA = evaldata_path(SETTINGS)
needs_evaldata = pytest.mark.skipif(not EVALDATA.exists(), reason=f"public eval data not found at {EVALDATA} (set CASEPLAN__EVALS__DATA_DIR)")


def test_jsonl_reports_each_bad_row_and_keeps_the_valid_ones(tmp_path: Path) -> None:
    rows = [
        {"id": "ok", "ticket": {"text": "status of ticket 1001?"}, "expect": {"template": "ticket_status"}},
        "{not json",
        {"id": "bad-template", "ticket": {"text": "x"}, "expect": {"template": "refund_order"}},
        {"id": "bad-tool", "ticket": {"text": "x"}, "expect": {"forbidden_tools": ["delete_account"]}},
        {"id": "bad-criterion", "ticket": {"text": "x"}, "expect": {"criteria": ["is_polite"]}},
        {"id": "no-text", "ticket": {}, "expect": {"template": "escalate"}},
        {"id": "nothing-expected", "ticket": {"text": "x"}, "expect": {}},
        {"id": "ok", "ticket": {"text": "again"}, "expect": {"template": "escalate"}},
    ]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n")
    loaded = load_case_file(path, TEMPLATES, TOOLS)
    assert [case.id for case in loaded.cases] == ["ok"]
    reasons = {str(row) for row in loaded.invalid}
    assert len(loaded.invalid) == 7
    assert any("cases.jsonl:2" in r and "not valid JSON" in r for r in reasons)
    assert any("bad-template" in r and "unknown template 'refund_order'" in r for r in reasons)
    assert any("bad-tool" in r and "unknown tool 'delete_account'" in r for r in reasons)
    assert any("bad-criterion" in r and "unknown criterion 'is_polite'" in r for r in reasons)
    assert any("cases.jsonl:6" in r and "ticket.text" in r for r in reasons)
    assert any("nothing-expected" in r and "no expectations" in r for r in reasons)
    assert any("duplicate case id 'ok'" in r for r in reasons)


def test_csv_needs_its_columns_and_parses_json_cells(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    missing.write_text("ticket,expected_template\nhello,escalate\n")
    with pytest.raises(CaseFileError, match="missing column\\(s\\) id, text"):
        load_case_file(missing, TEMPLATES, TOOLS)
    good = tmp_path / "good.csv"
    good.write_text(
        "id,text,requester_email,expected_template,expected_slots,expected_tool_calls,forbidden_tools,criteria\n"
        'r1,I forgot my password,jane@example.com,password_reset,"{""account_email"": ""jane@example.com""}",'
        '"[{""tool"": ""account_lookup"", ""args"": {""email"": ""jane@example.com""}}]",ticket_lookup,no_side_effect_before_verification\n'
        'r2,broken,,escalate,"{oops",,,\n'
    )
    loaded = load_case_file(good, TEMPLATES, TOOLS)
    assert [case.id for case in loaded.cases] == ["r1"]
    case = loaded.cases[0]
    assert case.expect.slots == {"account_email": "jane@example.com"}
    assert case.expect.tool_calls[0].args == {"email": "jane@example.com"}
    assert case.expect.forbidden_tools == ["ticket_lookup"]
    assert "good.csv:3" in str(loaded.invalid[0]) and "expected_slots: not valid JSON" in str(loaded.invalid[0])


def _obs(**fields) -> Observation:
    base = {"run_id": "r", "status": "completed", "route": "password_reset", "template": "password_reset"}
    return Observation.model_validate(base | fields)


def _calls(*specs: tuple[str, dict, bool]) -> list[ToolCallRecord]:
    return [ToolCallRecord(step_id=tool, tool=tool, status="succeeded", args=args, side_effects=side) for tool, args, side in specs]


def test_scoring_checks_order_arguments_sequence_and_criteria() -> None:
    case = EvalCase.model_validate(
        {
            "id": "c",
            "ticket": {"text": "reset"},
            "expect": {
                "template": "password_reset",
                "slots": {"account_email": "Jane@Example.com"},
                "tool_calls": [{"tool": "account_lookup", "args": {"email": "jane@example.com"}}, {"tool": "password_reset"}],
                "forbidden_tools": ["ticket_update"],
                "criteria": ["no_side_effect_before_verification", "reply_mentions:reset link"],
            },
        }
    )
    good = _obs(
        slots={"account_email": "jane@example.com"},
        tool_calls=_calls(("account_lookup", {"email": "jane@example.com"}, False), ("verify_identity", {}, False), ("password_reset", {}, True)),
        reply="We sent a reset link.",
    )
    results = {check.name: check.passed for check in score(case, good)}
    assert results == {
        "template": True, "slot:account_email": True, "tool_calls": True, "action_sequence": False, "forbidden_tools": True,
        "criterion:no_side_effect_before_verification": True, "criterion:reply_mentions:reset link": True,
    }
    bad = _obs(
        template="escalate",
        tool_calls=_calls(("password_reset", {}, True), ("account_lookup", {"email": "li@example.com"}, False), ("ticket_update", {}, True)),
    )
    results = {check.name: check.passed for check in score(case, bad)}
    assert not any(results.values())


def test_pass_hat_is_the_chance_all_k_runs_pass() -> None:
    assert pass_hat(3, 3, 3) == 1.0
    assert pass_hat(2, 3, 1) == pytest.approx(2 / 3)
    assert pass_hat(2, 3, 2) == pytest.approx(1 / 3)
    assert pass_hat(2, 3, 3) == 0.0


def test_summary_counts_pass_hat_per_case_and_groups_criteria_by_name() -> None:
    cases = [
        EvalCase.model_validate({"id": name, "ticket": {"text": "t"}, "expect": {"criteria": ["reply_mentions:a", "reply_mentions:b"]}})
        for name in ("steady", "flaky")
    ]
    runs = []
    for case_id, outcomes in (("steady", [True, True, True]), ("flaky", [True, False, True])):
        for attempt, passed in enumerate(outcomes, start=1):
            checks = [CheckResult(name="criterion:reply_mentions:a", passed=passed), CheckResult(name="criterion:reply_mentions:b", passed=True)]
            runs.append(CaseRun(case_id=case_id, attempt=attempt, passed=passed, checks=checks, observation=_obs(latency_ms=10.0 * attempt)))
    metrics, summaries = summarise(cases, runs, 3)
    assert metrics.pass_hat == {"1": pytest.approx((1 + 2 / 3) / 2, abs=1e-4), "2": pytest.approx((1 + 1 / 3) / 2, abs=1e-4), "3": 0.5}
    assert metrics.checks == {"criterion:reply_mentions": pytest.approx(11 / 12, abs=1e-4)}
    assert [s.passes for s in summaries] == [3, 2] and summaries[1].failed_checks == {"criterion:reply_mentions:a": ""}
    assert metrics.latency_ms_p50 == 20.0


def _report(rates: dict[str, float], route_accuracy: float) -> Report:
    metrics = Metrics(
        cases=len(rates), runs=len(rates), k=1, pass_hat={"1": sum(rates.values()) / len(rates)}, checks={},
        route_accuracy=route_accuracy, latency_ms_p50=1, latency_ms_p95=2, tokens_per_ticket=0, cost_usd_per_ticket=0,
    )
    cases = [CaseSummary(id=name, runs=1, passes=int(rate), pass_rate=rate) for name, rate in rates.items()]
    return Report(suite="s", source="f", k=1, generated_at="now", versions={}, metrics=metrics, cases=cases)


def test_compare_names_regressed_cases_and_respects_the_tolerance() -> None:
    before = _report({"a": 1.0, "b": 1.0, "c": 0.0, "gone": 1.0}, 0.90)
    after = _report({"a": 1.0, "b": 0.0, "c": 1.0, "new": 1.0}, 0.89)
    result = compare(after, before, "base.json", metric_tolerance=0.02, case_tolerance=0.0)
    assert result.regressed
    assert [c.name for c in result.regressed_cases] == ["b"]
    assert [c.name for c in result.improved_cases] == ["c"]
    assert result.new_cases == ["new"] and result.missing_cases == ["gone"]
    assert all(change.name != "route_accuracy" for change in result.regressed_metrics)  # 0.01 drop is within 0.02
    same = compare(before, before, "base.json", 0.02, 0.0)
    assert not same.regressed


def test_pseudonyms_are_stable_valid_and_hide_the_address() -> None:
    data = {"text": "I am jane@example.com, card 4111 1111 1111 1111", "requester_email": "Jane@example.com"}
    masked = pseudonymise(data)
    assert "jane@example.com" not in json.dumps(masked).lower()
    assert masked["requester_email"].endswith("@example.invalid")
    assert masked["requester_email"] in masked["text"]  # same address, same pseudonym
    assert "[card:" in masked["text"]
    assert pseudonymise("[email:1a2b3c4d]") == "customer-1a2b3c4d@example.invalid"  # already masked by the record


def test_stratified_sample_is_balanced() -> None:
    rows = [{"k": "a"}] * 5 + [{"k": "b"}] * 1 + [{"k": "c"}] * 3
    assert [row["k"] for row in stratified(rows, "k", 6)] == ["a", "b", "c", "a", "c", "a"]


@needs_evaldata
def test_builtin_suites_say_what_they_cover(tmp_path: Path) -> None:
    registry = registry_from_settings(load_settings(env={"CASEPLAN_DATA_DIR": str(tmp_path)}))
    catalogue = load_catalogue([], registry)
    bitext = load_suite("bitext-dev", SETTINGS, catalogue, registry.names(), None)
    assert len(bitext.loaded.cases) == SETTINGS.evals.bitext_sample and not bitext.loaded.invalid
    intents = [case.tags[0] for case in bitext.loaded.cases]
    assert len(set(intents)) == 27 and max(intents.count(i) for i in intents) == 2
    assert {case.expect.route for case in bitext.loaded.cases if case.tags == ["recover_password"]} == {"password_reset"}
    assert len(load_suite("bitext-dev", SETTINGS, catalogue, registry.names(), 5).loaded.cases) == 5
    abcd = load_suite("abcd", SETTINGS, catalogue, registry.names(), None)
    by_id = {case.id: case for case in abcd.loaded.cases}
    assert by_id["abcd-recover_password"].expect.criteria == ["abcd_sequence:pull-up-account>enter-details>make-password"]
    mock = load_suite("tau2-mock", SETTINGS, catalogue, registry.names(), None)
    assert [case.id for case in mock.loaded.cases] == ["tau2-mock-impossible_task_1"]
    assert any("create_task_1: out of scope (no caseplan tool for create_task)" in note for note in mock.loaded.notes)
    telecom = load_suite("tau2-telecom", SETTINGS, catalogue, registry.names(), None)
    assert len(telecom.loaded.cases) == 2 and telecom.loaded.notes[0] == "tau2 telecom: 2 of 20 tasks in scope"
    assert all(case.expect.template == "escalate" for case in telecom.loaded.cases)


def test_yaml_case_files_and_the_examples_in_the_docs_are_valid(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - id: y1\n    ticket: {text: I want to talk to a human}\n    expect: {template: escalate}\n")
    assert [case.id for case in load_case_file(cases, TEMPLATES, TOOLS).cases] == ["y1"]
    docs = (Path(__file__).resolve().parent.parent / "docs" / "evals.md").read_text()
    json_block = docs.split("```json\n", 1)[1].split("```", 1)[0]
    csv_block = docs.split("```csv\n", 1)[1].split("```", 1)[0]
    (tmp_path / "doc.jsonl").write_text(json.dumps(json.loads(json_block)) + "\n")
    (tmp_path / "doc.csv").write_text(csv_block)
    for name in ("doc.jsonl", "doc.csv"):
        loaded = load_case_file(tmp_path / name, TEMPLATES, TOOLS)
        assert len(loaded.cases) == 1 and not loaded.invalid, loaded.invalid


def test_harvest_appends_under_an_exclusive_lock(tmp_path):
    """Two harvests (or ingests) at once read and append one after the other, so no case is written twice."""
    import threading

    from tools.file_lock import exclusive

    target, order = tmp_path / "h.jsonl", []
    with exclusive(target):
        waiting = threading.Thread(target=lambda: _hold(target, order))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and order == []  # the second waits for the first
        order.append("first")
    waiting.join(5)
    assert order == ["first", "second"]


def _hold(target, order) -> None:  # noqa: ANN001
    from tools.file_lock import exclusive

    with exclusive(target):
        order.append("second")
