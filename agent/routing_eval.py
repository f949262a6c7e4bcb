"""Routing evaluation on labelled public data: accuracy, macro-F1, escalation and wrong-side-effect
rates, confusion matrix, latency and model tokens, for the router alone, the local model alone and
the combined router.

Gold labels are templates: a Bitext intent becomes a template through the mapping file, and every
CLINC150 out-of-scope utterance should escalate. A *wrong side effect* is a ticket routed to a
template with side-effecting steps that is not its gold template: the error that costs most.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from agent.example_bank import ExampleBank, evaldata_dir, load_mapping, read_labelled_csv, resolve
from agent.models.calls import ModelCall
from agent.routing import ESCALATE_TEMPLATE, NearestNeighbourRouter, RouteDecision
from agent.settings import REPO_ROOT
from agent.tickets import Ticket

DATASETS = {"bitext": ("bitext/{split}.csv", ("train", "dev")), "clinc_oos": ("clinc150/oos_{split}.json", ("train", "val"))}
MAPPING = "configs/bitext_templates.yaml"


class LabelledTicket(BaseModel):
    text: str
    label: str      # dataset intent
    gold: str       # template


class ModeReport(BaseModel):
    mode: str
    tickets: int
    accuracy: float
    macro_f1: float
    escalation_rate: float
    wrong_side_effect_rate: float
    wrong_side_effects: int
    person_requests: int = 0                 # tickets whose intent is a request for a person / complaint
    person_requests_escalated: float | None = None
    latency_ms_p50: float
    latency_ms_p95: float
    tokens_per_ticket: float
    model_calls_per_ticket: float
    confusion: dict[str, dict[str, int]]
    note: str = ""


def load_dataset(dataset: str, split: str) -> list[LabelledTicket]:
    """Labelled tickets of a dataset split, gold labels as templates."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
    pattern, splits = DATASETS[dataset]
    if split not in splits:
        raise ValueError(f"dataset {dataset} has splits {', '.join(splits)}, not {split!r}")
    path = resolve(pattern.format(split=split), evaldata_dir())
    if not path.exists():
        raise ValueError(f"{path} not found: set CASEPLAN_EVALDATA_DIR to the shared evaluation data folder")
    if dataset == "clinc_oos":
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [LabelledTicket(text=text, label=label, gold=ESCALATE_TEMPLATE) for text, label in rows]
    mapping = load_mapping(REPO_ROOT / MAPPING)
    return [LabelledTicket(text=t, label=lab, gold=mapping.intents[lab]) for t, lab in read_labelled_csv(path)]


def predicted(decision: RouteDecision) -> str:
    return decision.template or ESCALATE_TEMPLATE


def score(
    mode: str,
    tickets: Sequence[LabelledTicket],
    predictions: Sequence[str],
    latencies_ms: Sequence[float],
    calls: Sequence[list[ModelCall]],
    side_effecting: set[str],
    note: str = "",
    person_labels: frozenset[str] | set[str] = frozenset(),
) -> ModeReport:
    gold = [t.gold for t in tickets]
    asked = [p for t, p in zip(tickets, predictions, strict=True) if t.label in person_labels]
    labels = sorted(set(gold) | set(predictions))
    confusion = {g: dict(Counter(p for gg, p in zip(gold, predictions, strict=True) if gg == g)) for g in sorted(set(gold))}
    f1s = []
    for label in labels:
        tp = sum(1 for g, p in zip(gold, predictions, strict=True) if g == p == label)
        fp = sum(1 for g, p in zip(gold, predictions, strict=True) if p == label and g != label)
        fn = sum(1 for g, p in zip(gold, predictions, strict=True) if g == label and p != label)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    wrong = sum(1 for g, p in zip(gold, predictions, strict=True) if p in side_effecting and p != g)
    n = len(tickets)
    tokens = sum(c.prompt_tokens + c.completion_tokens for group in calls for c in group)
    latencies = sorted(latencies_ms)
    return ModeReport(
        mode=mode,
        tickets=n,
        accuracy=round(sum(g == p for g, p in zip(gold, predictions, strict=True)) / n, 4),
        macro_f1=round(statistics.fmean(f1s), 4),
        escalation_rate=round(sum(p == ESCALATE_TEMPLATE for p in predictions) / n, 4),
        wrong_side_effect_rate=round(wrong / n, 4),
        wrong_side_effects=wrong,
        person_requests=len(asked),
        person_requests_escalated=round(sum(p == ESCALATE_TEMPLATE for p in asked) / len(asked), 4) if asked else None,
        latency_ms_p50=round(float(np.percentile(latencies, 50)), 2),
        latency_ms_p95=round(float(np.percentile(latencies, 95)), 2),
        tokens_per_ticket=round(tokens / n, 2),
        model_calls_per_ticket=round(sum(len(group) for group in calls) / n, 3),
        confusion=confusion,
        note=note,
    )


def run_mode(
    mode: str,
    tickets: Sequence[LabelledTicket],
    route: Callable[[Ticket], RouteDecision],
    side_effecting: set[str],
    note: str = "",
    person_labels: frozenset[str] | set[str] = frozenset(),
) -> ModeReport:
    """Route every ticket one at a time (embedding included), timing each."""
    predictions, latencies, calls = [], [], []
    for item in tickets:
        started = time.perf_counter()
        decision = route(Ticket(text=item.text))
        latencies.append((time.perf_counter() - started) * 1000)
        predictions.append(predicted(decision))
        calls.append(decision.model_calls)
    return score(mode, tickets, predictions, latencies, calls, side_effecting, note, person_labels)


def leave_intents_out(
    router: NearestNeighbourRouter, tickets: Sequence[LabelledTicket], side_effecting: set[str]
) -> tuple[ModeReport, dict[str, float]]:
    """For each unsupported intent: drop its examples from the bank, route its tickets.

    Unsupported intents are those mapped to `escalate` that are not requests for a person.
    The router's model tiebreak stays as configured. Returns the pooled report and the
    escalation rate per held-out intent.
    """
    full = router.bank
    held = sorted({t.label for t in tickets if t.gold == ESCALATE_TEMPLATE and t.label not in full.person_labels})
    vectors = router.embedder.embed([t.text for t in tickets])
    pooled: list[LabelledTicket] = []
    predictions, latencies, calls = [], [], []
    per_intent: dict[str, float] = {}
    try:
        for intent in held:
            router.use_bank(full.without({intent}))
            mine = [i for i, t in enumerate(tickets) if t.label == intent]
            routed = []
            for index in mine:
                started = time.perf_counter()
                decision = router.route_vector(Ticket(text=tickets[index].text), vectors[index])
                latencies.append((time.perf_counter() - started) * 1000)
                routed.append(predicted(decision))
                calls.append(decision.model_calls)
            pooled.extend(tickets[i] for i in mine)
            predictions.extend(routed)
            per_intent[intent] = round(sum(p == ESCALATE_TEMPLATE for p in routed) / len(routed), 4)
    finally:
        router.use_bank(full)
    note = f"{len(held)} unsupported intents, each left out of the bank in turn; latency excludes embedding"
    return score("leave_intents_out", pooled, predictions, latencies, calls, side_effecting, note), per_intent


class Calibration(BaseModel):
    min_similarity: float
    min_template_similarity: float
    detail: str


def calibrate(bank: ExampleBank, oos_vectors: np.ndarray, quantile: float = 1.0) -> Calibration:
    """Thresholds from training data only (never the dev split they are reported on).

    `min_similarity`: the 95th percentile of out-of-scope training utterances' best similarity,
    rounded up to 0.05. `min_template_similarity`: the `quantile`-th percentile of each handling
    template's training examples' similarity to their nearest *other* example of the same
    template (leave-one-out), the lowest over templates, rounded down to 0.01.
    """
    oos_best = (oos_vectors @ bank.vectors.T).max(axis=1)
    min_similarity = float(np.ceil(np.percentile(oos_best, 95) * 20) / 20)
    per_template = {}
    for template in sorted(set(bank.templates.tolist()) - {ESCALATE_TEMPLATE}):
        rows = np.flatnonzero(bank.templates == template)
        if len(rows) < 20:
            continue  # a handful of hand-written examples says nothing about a percentile
        sims = bank.vectors[rows] @ bank.vectors[rows].T
        np.fill_diagonal(sims, -1.0)
        per_template[template] = float(np.percentile(sims.max(axis=1), quantile))
    lowest = min(per_template.values()) if per_template else 0.0
    detail = f"oos p95 {np.percentile(oos_best, 95):.3f}; in-template leave-one-out p{quantile:g}: " + ", ".join(
        f"{k} {v:.3f}" for k, v in per_template.items()
    )
    return Calibration(min_similarity=round(min_similarity, 2), min_template_similarity=float(np.floor(lowest * 100) / 100), detail=detail)


def confusion_png(report: ModeReport, path: Path) -> Path:
    """A confusion matrix heat map (gold rows, predicted columns) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(report.confusion)
    cols = sorted({p for row in report.confusion.values() for p in row} | set(rows))
    matrix = np.array([[report.confusion[r].get(c, 0) for c in cols] for r in rows])
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 2, 0.8 * len(rows) + 2))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted template")
    ax.set_ylabel("gold template")
    ax.set_title(f"{report.mode}: accuracy {report.accuracy:.4f}")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color="black")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
