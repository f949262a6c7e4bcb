"""`caseplan stats` sums runs and model spend per route from the stored record."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from agent.cli import app
from agent.db import make_engine
from agent.models.calls import ModelCall
from agent.record import RunStore
from agent.stats import stats_by_route


def record_run(store: RunStore, template: str | None, method: str, reason: str | None, calls: list[ModelCall]) -> None:
    run = store.create_run({"text": "hello"}, {"code": "test"})
    for call in calls:
        store.append_event(run.id, "model_call", "route", call.model_dump(mode="json"))
    status = "escalated" if reason else "completed"
    store.finish_run(run.id, status=status, template=template or "escalate", route={"template": template, "method": method}, escalation_reason=reason)


def test_stats_group_runs_and_model_spend_by_route(settings, database_env):
    engine = make_engine(settings.database_url)
    store = RunStore(engine)
    api = ModelCall(purpose="route", model_id="gpt-test", prompt_tokens=100, completion_tokens=5, latency_ms=40, cost_usd=0.001)
    local = ModelCall(purpose="route", model_id="smollm2", model_sha256="a" * 64, prompt_tokens=60, completion_tokens=3, latency_ms=900)
    record_run(store, "password_reset", "nearest_neighbour", None, [])
    record_run(store, "password_reset", "nearest_neighbour", None, [])
    record_run(store, "knowledge_answer", "api", None, [api, api])
    record_run(store, None, "api", "budget_exceeded", [api])
    record_run(store, "password_reset", "model_tiebreak", None, [local])
    rows = {row["route"]: row for row in stats_by_route(engine)}
    assert rows["password_reset via nearest_neighbour"]["runs"] == 2 and rows["password_reset via nearest_neighbour"]["model_calls"] == 0
    assert rows["knowledge_answer via api"]["prompt_tokens"] == 200 and rows["knowledge_answer via api"]["cost_usd"] == 0.002
    assert rows["escalate via api"]["escalation_reasons"] == {"budget_exceeded": 1}
    assert rows["password_reset via model_tiebreak"]["models"] == {"smollm2": 1}
    env = {"CASEPLAN_DATA_DIR": str(settings.data_path), **database_env}
    result = CliRunner().invoke(app, ["stats", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert {row["route"] for row in json.loads(result.output)} == set(rows)
    table = CliRunner().invoke(app, ["stats"], env=env)
    assert "budget_exceeded 1" in table.output
