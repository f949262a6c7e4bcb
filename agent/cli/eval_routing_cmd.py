"""`caseplan eval routing`: how well tickets reach the right template, on public labelled data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import typer

from agent.cli.common import echo_json, fail, output_folder, state, with_errors
from agent.cli.eval_group import app
from agent.example_bank import BankError
from agent.settings import REPO_ROOT, RouterSettings, _read_yaml

ROUTER_PROFILE = REPO_ROOT / "configs" / "bitext.yaml"


@app.command("routing")
@with_errors
def routing(
    ctx: typer.Context,
    dataset: str = typer.Option("bitext", help="bitext | clinc_oos"),
    split: str = typer.Option("dev", help="bitext: train | dev; clinc_oos: train | val"),
    modes: str = typer.Option("router,combined,local_model", help="Comma-separated: router, combined, local_model."),
    leave_intents_out: bool = typer.Option(False, "--leave-intents-out", help="Also drop each unsupported intent from the bank and route its tickets (bitext)."),
    model_sample: int = typer.Option(60, min=0, help="Tickets for the local-model-only mode (about 1 s each on a 2-core CPU); 0: all."),
    limit: int = typer.Option(0, min=0, help="Route only the first N tickets (0: all)."),
    router_config: Path = typer.Option(ROUTER_PROFILE, help="YAML file whose `router:` section sets the example bank and thresholds."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Derive thresholds from bitext train + clinc oos_train and use them."),
    out: Path = typer.Option(None, help="Folder for the JSON report and confusion-matrix PNGs (default <data_dir>/eval)."),
) -> None:
    """Accuracy, macro-F1, escalation and wrong-side-effect rates, latency and tokens per mode."""
    from agent.models.tasks import LocalRouteModel
    from agent.routing import ESCALATE_TEMPLATE, NearestNeighbourRouter, RouteDecision, side_effect_templates
    from agent.routing_eval import (
        calibrate as derive,
    )
    from agent.routing_eval import (
        confusion_png,
        load_dataset,
        run_mode,
    )
    from agent.routing_eval import (
        leave_intents_out as run_leave_out,
    )
    from agent.runtime import Runtime
    from agent.tickets import Ticket

    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = sorted(set(chosen) - {"router", "combined", "local_model"})
    if unknown:
        fail(f"unknown mode(s) {unknown}; use router, combined, local_model")
    try:
        tickets = load_dataset(dataset, split)
    except ValueError as exc:
        fail(str(exc))
    if limit:
        tickets = tickets[:limit]
    settings = state(ctx).settings
    folder = output_folder(out or settings.data_path / "eval")
    router_section = _read_yaml(router_config).get("router", {})
    router_settings = RouterSettings.model_validate({**settings.router.model_dump(), **router_section})
    runtime = Runtime.build(settings)
    cache = settings.data_path / "cache"
    try:
        base = NearestNeighbourRouter(runtime.catalogue, runtime.embedder, router_settings, None, cache)
        bank = base.bank
        calibration = None
        if calibrate:
            oos = load_dataset("clinc_oos", "train")
            calibration = derive(bank, runtime.embedder.embed([t.text for t in oos]))
            router_settings = router_settings.model_copy(
                update={"min_similarity": calibration.min_similarity, "min_template_similarity": calibration.min_template_similarity}
            )
    except BankError as exc:
        fail(str(exc))
    side_effecting = side_effect_templates(runtime.catalogue, runtime.registry)
    tiebreaker = LocalRouteModel(runtime.local_model)

    def make_router(with_model: bool) -> NearestNeighbourRouter:
        routed = NearestNeighbourRouter(
            runtime.catalogue,
            runtime.embedder,
            router_settings.model_copy(update={"use_model_tiebreak": with_model}),
            tiebreaker,
            cache,
            acting=side_effecting,
        )
        routed.use_bank(bank)
        return routed

    def model_only(ticket: Ticket) -> RouteDecision:
        call = tiebreaker.choose(ticket, runtime.catalogue.routable())
        choice = call.output.get("template") if isinstance(call.output, dict) else None
        template = choice if choice in runtime.catalogue.names() else ESCALATE_TEMPLATE
        return RouteDecision(template=template, confidence=0.0, method="rule", model_calls=[call])

    reports = []
    for mode in chosen:
        if mode == "local_model":
            sample = tickets if not model_sample or model_sample >= len(tickets) else random.Random(0).sample(tickets, model_sample)
            note = "" if len(sample) == len(tickets) else f"random sample of {len(sample)} of {len(tickets)} tickets (seed 0): the local model alone is slow"
            reports.append(run_mode(mode, sample, model_only, side_effecting, note, bank.person_labels))
        else:
            reports.append(run_mode(mode, tickets, make_router(mode == "combined").route, side_effecting, "", bank.person_labels))
    per_intent = None
    if leave_intents_out:
        if dataset != "bitext":
            fail("--leave-intents-out needs --dataset bitext")
        report, per_intent = run_leave_out(make_router("combined" in chosen), tickets, side_effecting)
        reports.append(report)
    name = f"routing-{dataset}-{split}"
    result = {
        "dataset": dataset,
        "split": split,
        "bank": {"examples": len(bank.labels), "digest": bank.digest, "source": str(router_config)},
        "thresholds": router_settings.model_dump(include={"min_similarity", "min_template_similarity", "min_margin"}),
        "calibration": calibration.model_dump() if calibration else None,
        "side_effect_templates": sorted(side_effecting),
        "modes": [r.model_dump() for r in reports],
        "leave_intents_out_escalation": per_intent,
        "confusion_png": [str(confusion_png(r, folder / f"{name}-{r.mode}.png")) for r in reports],
    }
    (folder / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    echo_json({k: v for k, v in result.items() if k != "modes"} | {"modes": [r.model_dump(exclude={"confusion"}) for r in reports]})
