"""A graph node's events land in one transaction, chained onto the head this process last wrote,
and a second writer on the same run (a re-leased run) never breaks the chain."""

from __future__ import annotations

import pytest

from agent.audit import AuditSource, verify_run
from agent.db import make_engine
from agent.record import NewEvent, RecordProtection, RunStore, UnknownRunError


@pytest.fixture
def stores(settings):
    engine = make_engine(settings.database_url)
    protection = RecordProtection.from_settings(settings, writer=True)
    yield RunStore(engine, protection), RunStore(engine, protection)
    engine.dispose()


def test_a_nodes_events_and_run_change_land_together_in_order(stores, settings):
    store, _ = stores
    run = store.create_run({"text": "hello", "requester_email": "jane@example.com"}, {"code": "test"})
    written = store.append_events(
        run.id,
        [NewEvent("model_call", "route", {"model": "m"}), NewEvent("route", "route", {"template": "faq"})],
        status="running",
    )
    assert [(e.seq, e.kind) for e in written] == [(1, "model_call"), (2, "route")]
    assert written[1].prev_hash == written[0].hash
    assert store.get_run(run.id).status == "running"
    store.finish_run(run.id, status="completed")
    assert verify_run(AuditSource.open(settings), run.id).status == "verified"


def test_an_unknown_run_writes_nothing(stores):
    store, _ = stores
    run = store.create_run({"text": "hello"}, {"code": "test"})
    with pytest.raises(UnknownRunError):
        store.append_events("run_missing", [NewEvent("intake", "intake", {})], status="running")
    with pytest.raises(ValueError, match="unknown event kind"):
        store.append_events(run.id, [NewEvent("intake", "intake", {}), NewEvent("gossip", "intake", {})])
    assert store.events(run.id) == []


def test_a_second_writer_on_the_same_run_extends_the_chain_instead_of_forking_it(stores, settings):
    first, second = stores
    run = first.create_run({"text": "hello"}, {"code": "test"})
    first.append_events(run.id, [NewEvent("intake", "intake", {"n": 1})])
    second.append_events(run.id, [NewEvent("route", "route", {"n": 2})])  # the run moved to another worker
    first.append_events(run.id, [NewEvent("plan", "plan", {"n": 3})])  # its cached head is stale now
    events = first.events(run.id)
    assert [(e.seq, e.payload["n"]) for e in events] == [(1, 1), (2, 2), (3, 3)]
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    first.finish_run(run.id, status="completed")
    assert verify_run(AuditSource.open(settings), run.id).status == "verified"
