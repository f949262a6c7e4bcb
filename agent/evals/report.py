"""Report files (JSON for machines and `--compare`, Markdown for people, PNG charts) and the
comparison with an earlier report that gates CI on regressions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from agent.evals.cases import InvalidRow
from agent.evals.metrics import CaseSummary, Metrics
from agent.evals.runner import CaseRun
from tools.base import first_problem
from tools.safe_parse import read_text_file

# Headline numbers where higher is better; a drop beyond the tolerance is a regression.
GATED_METRICS = (
    "template_accuracy", "route_accuracy", "slot_accuracy", "action_sequence_match",
    "escalation_precision", "escalation_recall",
)


class Report(BaseModel):
    suite: str
    source: str
    k: int
    generated_at: str
    versions: dict[str, str]
    metrics: Metrics
    cases: list[CaseSummary]
    invalid: list[InvalidRow] = []
    coverage: list[str] = []
    runs: list[CaseRun] = []


class Change(BaseModel):
    name: str
    before: float | None
    after: float | None


class Comparison(BaseModel):
    baseline: str
    metric_tolerance: float
    case_tolerance: float
    metrics: list[Change] = []
    regressed_metrics: list[Change] = []
    regressed_cases: list[Change] = []
    improved_cases: list[Change] = []
    new_cases: list[str] = []
    missing_cases: list[str] = []

    @property
    def regressed(self) -> bool:
        return bool(self.regressed_metrics or self.regressed_cases)


class ReportError(ValueError):
    """A baseline report that cannot be read; the message names the file."""


def now_stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_report(path: Path) -> Report:
    try:
        return Report.model_validate_json(read_text_file(path))
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the baseline report ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ReportError(f"{path}: the baseline report is not UTF-8 text") from None
    except ValidationError as exc:
        raise ReportError(f"{path}: not a caseplan eval report ({first_problem(exc, 'report')})") from None


def _headline(metrics: Metrics) -> dict[str, float | None]:
    values: dict[str, float | None] = {f"pass^{j}": value for j, value in metrics.pass_hat.items()}
    values |= {name: getattr(metrics, name) for name in GATED_METRICS}
    return values


def compare(current: Report, baseline: Report, baseline_path: str, metric_tolerance: float, case_tolerance: float) -> Comparison:
    """What got better or worse; metrics missing from either side are shown, never gated."""
    result = Comparison(baseline=baseline_path, metric_tolerance=metric_tolerance, case_tolerance=case_tolerance)
    before, after = _headline(baseline.metrics), _headline(current.metrics)
    for name in dict.fromkeys([*before, *after]):
        change = Change(name=name, before=before.get(name), after=after.get(name))
        result.metrics.append(change)
        if change.before is not None and change.after is not None and change.before - change.after > metric_tolerance + 1e-9:
            result.regressed_metrics.append(change)
    old = {case.id: case.pass_rate for case in baseline.cases}
    new = {case.id: case.pass_rate for case in current.cases}
    for case_id, rate in new.items():
        if case_id not in old:
            result.new_cases.append(case_id)
        elif old[case_id] - rate > case_tolerance + 1e-9:
            result.regressed_cases.append(Change(name=case_id, before=old[case_id], after=rate))
        elif rate > old[case_id]:
            result.improved_cases.append(Change(name=case_id, before=old[case_id], after=rate))
    result.missing_cases = [case_id for case_id in old if case_id not in new]
    return result


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_markdown(report: Report, comparison: Comparison | None = None) -> str:
    m = report.metrics
    lines = [
        f"# Eval report: {report.suite}",
        "",
        f"{m.cases} cases x k={report.k} runs = {m.runs} runs; generated {report.generated_at}; source `{report.source}`.",
        f"Versions: catalogue {report.versions.get('catalogue', '?')}, policy {report.versions.get('policy', '?')}, "
        f"local model {report.versions.get('local_model', '?')}, code {report.versions.get('code', '?')}.",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| pass^{j} | {_fmt(value)} |" for j, value in m.pass_hat.items()]
    for name in GATED_METRICS:
        lines.append(f"| {name.replace('_', ' ')} | {_fmt(getattr(m, name))} |")
    lines += [
        f"| latency p50 / p95 | {m.latency_ms_p50:.0f} ms / {m.latency_ms_p95:.0f} ms |",
        f"| tokens per ticket | {m.tokens_per_ticket:.1f} |",
        f"| cost per ticket | ${m.cost_usd_per_ticket:.6f} |",
        "",
        "## Pass rate per check",
        "",
        "| check | pass rate |",
        "|---|---|",
    ]
    lines += [f"| {name} | {_fmt(rate)} |" for name, rate in m.checks.items()]
    failing = [case for case in report.cases if case.passes < case.runs]
    lines += ["", f"## Failing cases ({len(failing)})", ""]
    for case in failing[:50]:
        details = "; ".join(f"{name}: {detail}" if detail else name for name, detail in case.failed_checks.items())
        tags = f" [{', '.join(case.tags)}]" if case.tags else ""
        lines.append(f"- `{case.id}`{tags} {case.passes}/{case.runs} passed: {details}")
    if len(failing) > 50:
        lines.append(f"- ... and {len(failing) - 50} more (report.json)")
    if report.invalid:
        lines += ["", f"## Invalid rows ({len(report.invalid)}, not run)", ""]
        lines += [f"- {row}" for row in report.invalid]
    if report.coverage:
        lines += ["", "## Coverage", ""] + [f"- {note}" for note in report.coverage]
    if comparison is not None:
        lines += ["", *render_comparison(comparison)]
    return "\n".join(lines) + "\n"


def render_comparison(comparison: Comparison) -> list[str]:
    lines = [
        f"## Compared with {comparison.baseline}",
        "",
        f"Tolerance: metrics may drop by {comparison.metric_tolerance}, a case's pass rate by {comparison.case_tolerance}.",
        "",
        "| metric | before | after | change |",
        "|---|---|---|---|",
    ]
    for change in comparison.metrics:
        delta = "" if change.before is None or change.after is None else f"{change.after - change.before:+.3f}"
        lines.append(f"| {change.name} | {_fmt(change.before)} | {_fmt(change.after)} | {delta} |")
    verdict = "REGRESSED" if comparison.regressed else "no regression"
    lines += ["", f"Verdict: **{verdict}**", ""]
    for title, changes in (("Regressed cases", comparison.regressed_cases), ("Improved cases", comparison.improved_cases)):
        if changes:
            lines.append(f"{title}:")
            lines += [f"- `{c.name}` {_fmt(c.before, 2)} -> {_fmt(c.after, 2)}" for c in changes]
            lines.append("")
    if comparison.new_cases:
        lines.append(f"New cases (no baseline): {', '.join(comparison.new_cases)}")
    if comparison.missing_cases:
        lines.append(f"Cases in the baseline only: {', '.join(comparison.missing_cases)}")
    return lines


def write_charts(report: Report, folder: Path) -> list[Path]:
    """Two PNGs: pass^j for j = 1..k, and pass rate per check."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    m = report.metrics
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ks = [int(j) for j in m.pass_hat]
    ax.plot(ks, list(m.pass_hat.values()), marker="o")
    ax.set(xlabel="k", ylabel="pass^k", ylim=(0, 1.02), title=f"{report.suite}: pass^k", xticks=ks)
    fig.tight_layout()
    written.append(folder / "pass_k.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    names = list(m.checks)
    labels = [name if len(name) <= 40 else name[:39] + "…" for name in names]
    fig, ax = plt.subplots(figsize=(8, 0.4 * max(len(names), 3) + 1))
    ax.barh(labels, [m.checks[name] or 0.0 for name in names])
    ax.set(xlim=(0, 1), xlabel="pass rate", title=f"{report.suite}: pass rate per check")
    fig.tight_layout()
    written.append(folder / "checks.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    return written


def write_report(report: Report, folder: Path, comparison: Comparison | None = None) -> list[Path]:
    """report.json, report.md (with the comparison when there is one) and the charts."""
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = report.model_dump(mode="json")
    if comparison is not None:
        data["comparison"] = comparison.model_dump(mode="json")
    (folder / "report.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(render_markdown(report, comparison), encoding="utf-8")
    return [folder / "report.json", folder / "report.md", *write_charts(report, folder)]
