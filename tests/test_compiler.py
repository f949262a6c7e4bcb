"""Template + slots -> plan: deterministic ids and hash, slot rules enforced."""

from __future__ import annotations

import pytest

from agent.db import make_engine
from agent.tooling import build_registry, open_embedded_index
from plans.catalogue import load_catalogue
from plans.compiler import CompileError, compile_plan
from tools.sandbox.store import SandboxStore


@pytest.fixture
def catalogue_and_registry(tmp_path):
    registry = build_registry(
        make_engine(f"sqlite:///{tmp_path / 'r.db'}"),
        SandboxStore(make_engine(f"sqlite:///{tmp_path / 's.db'}")),
        open_embedded_index(tmp_path / "knowledge"),
    )
    return load_catalogue([], registry), registry


SLOTS = {"account_email": "jane@example.com", "requester_email": "jane@example.com", "ticket_id": "1003"}


def compile_reset(catalogue, registry, slots=SLOTS, version=None):
    return compile_plan(
        catalogue.get("password_reset"),
        slots,
        catalogue_version=version or catalogue.version,
        ticket_id=slots.get("ticket_id"),
        registry=registry,
    )


def test_same_inputs_give_the_same_plan_and_hash(catalogue_and_registry):
    catalogue, registry = catalogue_and_registry
    first, second = compile_reset(catalogue, registry), compile_reset(catalogue, registry, dict(reversed(SLOTS.items())))
    assert first == second and first.hash == second.hash
    assert [step.id for step in first.steps] == ["look_up_ticket", "pull_up_account", "verify_identity", "make_password", "update_ticket"]
    assert first.steps[0].args == {"ticket_id": "1003"} and first.steps[1].args == {"email": "jane@example.com"}
    assert first.steps[3].args["verification_id"] == "$steps.verify_identity.output.verification_id"
    assert first.steps[4].args["ticket_id"] == "$steps.look_up_ticket.output.ticket_id"


def test_hash_changes_with_slots_and_catalogue_version(catalogue_and_registry):
    catalogue, registry = catalogue_and_registry
    base = compile_reset(catalogue, registry).hash
    assert compile_reset(catalogue, registry, {**SLOTS, "ticket_id": "1004"}).hash != base
    assert compile_reset(catalogue, registry, version="other").hash != base


def test_missing_required_slots_are_named(catalogue_and_registry):
    catalogue, registry = catalogue_and_registry
    with pytest.raises(CompileError, match="missing required slots: account_email, ticket_id"):
        compile_reset(catalogue, registry, {"requester_email": "jane@example.com"})


def test_undeclared_slot_and_invalid_value_are_refused(catalogue_and_registry):
    catalogue, registry = catalogue_and_registry
    with pytest.raises(CompileError, match="slot 'password' is not declared"):
        compile_reset(catalogue, registry, {**SLOTS, "password": "hunter2"})
    with pytest.raises(CompileError, match="argument 'email' fails account_lookup input"):
        compile_reset(catalogue, registry, {**SLOTS, "account_email": "not-an-email"})


def test_optional_slot_left_empty_drops_its_argument(catalogue_and_registry):
    catalogue, registry = catalogue_and_registry
    plan = compile_plan(
        catalogue.get("close_ticket"), {"ticket_id": "1003"}, catalogue_version=catalogue.version, ticket_id="1003", registry=registry
    )
    assert plan.step("mark_solved").args == {"ticket_id": "$steps.lookup_ticket.output.ticket_id", "status": "solved"}


def test_a_step_only_if_an_empty_slot_is_left_out_of_the_plan(catalogue_and_registry):
    """The handled ticket is read when the ticket carries an id, and the plan says so; with
    no id the step is not in the plan (not a step that runs with nothing)."""
    catalogue, registry = catalogue_and_registry
    status = catalogue.get("ticket_status")

    def compiled(slots):
        return compile_plan(status, slots, catalogue_version=catalogue.version, ticket_id=slots.get("handled_ticket_id"), registry=registry)

    with_handled = compiled({"ticket_id": "1003", "handled_ticket_id": "1004"})
    assert [(s.id, s.args) for s in with_handled.steps] == [
        ("read_handled_ticket", {"ticket_id": "1004"}),
        ("lookup_ticket", {"ticket_id": "1003"}),
    ]
    assert [s.id for s in compiled({"ticket_id": "1003"}).steps] == ["lookup_ticket"]


def test_a_reply_may_not_use_a_step_that_can_be_left_out(catalogue_and_registry):
    from plans.validator import validate_template

    catalogue, registry = catalogue_and_registry
    status = catalogue.get("ticket_status")
    broken = status.model_copy(update={"reply": status.reply.model_copy(update={"text": "{steps.read_handled_ticket.output.status}"})})
    problems = [str(p) for p in validate_template(broken, registry)]
    assert any("reply: uses step 'read_handled_ticket', which is left out when slot 'handled_ticket_id' is empty" in p for p in problems), problems


def test_packaged_templates_follow_abcd_canonical_flows(catalogue_and_registry):
    catalogue, _ = catalogue_and_registry
    reset = catalogue.get("password_reset")
    assert reset.abcd_flow == "recover_password"
    assert [s.abcd_action for s in reset.steps if s.abcd_action] == ["pull-up-account", "enter-details", "make-password"]
