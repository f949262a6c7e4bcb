"""The router over a labelled example bank (a small Bitext-shaped dataset, real MiniLM embeddings):
supported requests reach their template, unsupported and off-topic ones escalate with the right
reason, a weak match never reaches a side-effecting template, and evaluation counts honestly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.example_bank import BankError, build_bank
from agent.routing import Candidate, NearestNeighbourRouter, side_effect_templates
from agent.routing_eval import LabelledTicket, score
from agent.settings import ExampleSetSettings, RouterSettings
from agent.tickets import Ticket

pytestmark = pytest.mark.slow

ROWS = [
    ("I forgot my password for my profile", "recover_password"),
    ("help me recover the password of my user account", "recover_password"),
    ("i lost my password, can you help me get it back", "recover_password"),
    ("where can I see your refund policy", "check_refund_policy"),
    ("what are the conditions to get a refund", "check_refund_policy"),
    ("I want to speak with a human agent", "contact_human_agent"),
    ("put me through to a real person", "contact_human_agent"),
    ("I want to cancel my order 12345", "cancel_order"),
    ("help me cancel the purchase I made yesterday", "cancel_order"),
    ("I need to delete my account", "delete_account"),
    ("close my user account permanently", "delete_account"),
]
MAPPING = """\
intents:
  recover_password: password_reset
  check_refund_policy: knowledge_answer
  contact_human_agent: escalate
  cancel_order: escalate
  delete_account: escalate
always_escalate: [contact_human_agent]
"""


def write_set(folder: Path, rows=ROWS, mapping=MAPPING) -> ExampleSetSettings:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["utterance,intent"] + [f'"{text}",{intent}' for text, intent in rows]
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    (folder / "mapping.yaml").write_text(mapping)
    return ExampleSetSettings(path=str(folder / "train.csv"), mapping=str(folder / "mapping.yaml"))


@pytest.fixture
def catalogue(runtime):
    return runtime.catalogue


def make_router(catalogue, embedder, tmp_path, **thresholds) -> NearestNeighbourRouter:
    settings = RouterSettings(example_sets=[write_set(tmp_path / "set")], use_model_tiebreak=False, **thresholds)
    return NearestNeighbourRouter(catalogue, embedder, settings, None, tmp_path / "cache")


def test_a_near_tie_no_model_breaks_never_chooses_a_side_effect(catalogue, embedder, tmp_path, monkeypatch):
    tie = [Candidate(template="close_ticket", score=0.71), Candidate(template="ticket_status", score=0.70)]
    monkeypatch.setattr("agent.routing.template_scores", lambda bank, vector: (list(tie), {}))
    settings = RouterSettings(example_sets=[write_set(tmp_path / "set")], use_model_tiebreak=False)
    router = NearestNeighbourRouter(catalogue, embedder, settings, None, tmp_path / "cache", acting={"close_ticket", "password_reset"})
    ticket = Ticket(text="what is going on with ticket 1003, can it be closed?")
    decision = router.route(ticket)
    assert (decision.template, decision.reason) == (None, "low_confidence") and "no model breaks the tie" in decision.detail
    tie.reverse()  # the read-only template ahead by as little: chosen, nothing happens to the account
    assert router.route(ticket).template == "ticket_status"
    tie[:] = [Candidate(template="close_ticket", score=0.80), Candidate(template="ticket_status", score=0.70)]
    assert router.route(ticket).template == "close_ticket"  # a clear margin


class ScriptedTiebreaker:
    """Stands in for the local model's pick, which is what this rule is about."""

    def __init__(self, pick: str) -> None:
        self.pick = pick

    def choose(self, ticket, candidates):  # noqa: ANN001, ANN201
        from agent.models.calls import ModelCall

        return ModelCall(purpose="route_tiebreak", model_id="scripted", output={"template": self.pick})


def test_the_local_models_pick_in_a_tie_never_acts_on_an_account(catalogue, embedder, tmp_path, monkeypatch):
    """'how do I delete my account' sat between password_reset and knowledge_answer, and SmolLM2
    picked the reset: a link was sent. A tie the model settles toward a side effect is unsure."""
    tie = [Candidate(template="password_reset", score=0.59), Candidate(template="knowledge_answer", score=0.58)]
    monkeypatch.setattr("agent.routing.template_scores", lambda bank, vector: (list(tie), {}))
    settings = RouterSettings(example_sets=[write_set(tmp_path / "set")], use_model_tiebreak=True)
    ticket = Ticket(text="how do I delete my account")

    def route(pick: str):  # noqa: ANN202
        router = NearestNeighbourRouter(
            catalogue, embedder, settings, ScriptedTiebreaker(pick), tmp_path / "cache", acting={"close_ticket", "password_reset"}
        )
        return router.route(ticket)

    acting = route("password_reset")
    assert (acting.template, acting.reason, acting.method) == (None, "low_confidence", "model_tiebreak")
    assert "the model's pick, password_reset, has side effects" in acting.detail and len(acting.model_calls) == 1
    assert route("knowledge_answer").template == "knowledge_answer"  # a read-only pick is taken


def test_supported_unsupported_and_person_requests(catalogue, embedder, tmp_path):
    router = make_router(catalogue, embedder, tmp_path, min_similarity=0.45, min_template_similarity=0.5)
    reset = router.route(Ticket(text="I forgot my password and cannot recover it"))
    assert reset.template == "password_reset" and reset.reason is None
    person = router.route(Ticket(text="can I talk to a human agent please"))
    assert person.template == "escalate" and person.reason == "customer_request"
    unsupported = router.route(Ticket(text="please cancel the order I placed"))
    assert unsupported.template == "escalate" and unsupported.reason == "out_of_scope"
    trivia = router.route(Ticket(text="who won the football world cup in 1966"))
    assert trivia.template is None and trivia.reason == "out_of_scope"


def test_weak_match_never_reaches_a_handling_template(catalogue, embedder, tmp_path):
    text = "my password manager app crashes on startup"
    loose = make_router(catalogue, embedder, tmp_path, min_similarity=0.2, min_template_similarity=0.0)
    strict = make_router(catalogue, embedder, tmp_path, min_similarity=0.2, min_template_similarity=0.95)
    assert loose.route(Ticket(text=text)).template == "password_reset"
    decision = strict.route(Ticket(text=text))
    assert decision.template is None and decision.reason == "low_confidence"
    assert "password_reset" in decision.detail


def test_bank_is_cached_and_leave_intents_out_drops_only_that_intent(catalogue, embedder, tmp_path):
    router = make_router(catalogue, embedder, tmp_path)
    bank = router.bank
    assert list((tmp_path / "cache").glob(f"examples-{bank.digest}.npy"))
    assert bank.person_labels == {"contact_human_agent"}
    smaller = bank.without({"cancel_order"})
    assert "cancel_order" not in smaller.labels and len(smaller.labels) == len(bank.labels) - 2
    assert len(smaller.vectors) == len(smaller.labels) and smaller.digest != bank.digest


def test_bad_example_sets_are_clear_errors(catalogue, embedder, tmp_path):
    unmapped = write_set(tmp_path / "a", mapping="intents:\n  recover_password: password_reset\n")
    with pytest.raises(BankError, match="have no template"):
        build_bank(catalogue, embedder, [unmapped], None)
    unknown = write_set(tmp_path / "b", mapping=MAPPING.replace("knowledge_answer", "no_such_template"))
    with pytest.raises(BankError, match="unknown templates"):
        build_bank(catalogue, embedder, [unknown], None)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "train.csv").write_text("text,label\nhello,x\n")
    (tmp_path / "c" / "mapping.yaml").write_text(MAPPING)
    columns = ExampleSetSettings(path=str(tmp_path / "c" / "train.csv"), mapping=str(tmp_path / "c" / "mapping.yaml"))
    with pytest.raises(BankError, match="needs columns"):
        build_bank(catalogue, embedder, [columns], None)
    missing = ExampleSetSettings(path=str(tmp_path / "nope.csv"), mapping=str(tmp_path / "a" / "mapping.yaml"))
    assert len(build_bank(catalogue, embedder, [missing], None).labels) == len(build_bank(catalogue, embedder, [], None).labels)


def test_score_counts_wrong_side_effects_and_macro_f1():
    tickets = [
        LabelledTicket(text="a", label="x", gold="password_reset"),
        LabelledTicket(text="b", label="y", gold="escalate"),
        LabelledTicket(text="c", label="z", gold="knowledge_answer"),
        LabelledTicket(text="d", label="y", gold="escalate"),
    ]
    predictions = ["password_reset", "password_reset", "escalate", "escalate"]
    report = score("router", tickets, predictions, [1, 2, 3, 4], [[], [], [], []], {"password_reset", "close_ticket"})
    assert report.accuracy == 0.5 and report.wrong_side_effects == 1 and report.wrong_side_effect_rate == 0.25
    assert report.escalation_rate == 0.5
    assert report.macro_f1 == round((2 / 3 + 1 / 2 + 0) / 3, 4)  # password_reset, escalate, knowledge_answer
    assert report.confusion["escalate"] == {"password_reset": 1, "escalate": 1}


def test_eval_routing_cli_reports_every_mode(runtime, tmp_path, monkeypatch):
    assert side_effect_templates(runtime.catalogue, runtime.registry) == {"password_reset", "close_ticket"}
    data = tmp_path / "evaldata"
    write_set(data / "bitext")
    (data / "bitext" / "dev.csv").write_text(
        'utterance,intent\n"I forgot my password again",recover_password\n"cancel my order please",cancel_order\n'
        '"talk to a human now",contact_human_agent\n'
    )
    profile = tmp_path / "router.yaml"
    profile.write_text(
        f"router:\n  example_sets:\n    - path: bitext/train.csv\n      mapping: {data / 'bitext' / 'mapping.yaml'}\n"
        "  min_similarity: 0.4\n  min_template_similarity: 0.5\n"
    )
    monkeypatch.setenv("CASEPLAN_EVALDATA_DIR", str(data))
    env = {"CASEPLAN_DATA_DIR": str(runtime.settings.data_path), "CASEPLAN_EVALDATA_DIR": str(data)}
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["eval", "routing", "--modes", "router", "--leave-intents-out", "--router-config", str(profile), "--out", str(out)],
        env=env,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "routing-bitext-dev.json").read_text())
    modes = {m["mode"]: m for m in report["modes"]}
    assert modes["router"]["tickets"] == 3 and modes["router"]["wrong_side_effects"] == 0
    assert set(report["leave_intents_out_escalation"]) == {"cancel_order"}  # the unsupported intent in dev
    assert all(Path(p).stat().st_size > 1000 for p in report["confusion_png"])
    bad = CliRunner().invoke(app, ["eval", "routing", "--dataset", "nope"], env=env)
    assert bad.exit_code == 2 and "unknown dataset" in bad.output
