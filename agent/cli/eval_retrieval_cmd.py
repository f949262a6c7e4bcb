"""`caseplan eval retrieval`: BM25, dense and hybrid retrieval side by side on public data."""

from __future__ import annotations

from pathlib import Path

import typer

from agent.cli import eval_group
from agent.cli.common import fail, state, with_errors
from tools.knowledge.ranking import MODES


def register() -> None:
    """Adds `retrieval` to the shared `caseplan eval` group."""
    eval_group.app.command("retrieval")(retrieval)


@with_errors
def retrieval(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", help="banking_knowledge | stackfaq"),
    mode: str = typer.Option("all", "--mode", help="bm25 | dense | hybrid | all"),
    out: Path = typer.Option(Path("docs/eval"), "--out", help="Folder for the Markdown report and the PNG chart."),
) -> None:
    """recall@5/10/20, MRR@10 and nDCG@10 at document level, as Markdown plus a chart."""
    from agent.retrieval_eval import DATASETS, chart, evaluate, markdown
    from tools.embeddings import SentenceTransformerEmbedder

    if dataset not in DATASETS:
        fail(f"--dataset must be one of {', '.join(DATASETS)}, not {dataset!r}")
    if mode != "all" and mode not in MODES:
        fail(f"--mode must be one of {', '.join(MODES)} or all, not {mode!r}")
    settings = state(ctx).settings
    try:
        embedder = SentenceTransformerEmbedder(settings.embeddings.model_path, settings.embeddings.batch_size)
        report = evaluate(dataset, settings, embedder, MODES if mode == "all" else (mode,))
    except FileNotFoundError as exc:
        fail(str(exc))
    text = markdown(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"retrieval-{dataset}.md").write_text(text)
    chart(report, out / f"retrieval-{dataset}.png")
    typer.echo(text)
    typer.echo(f"written: {out / f'retrieval-{dataset}.md'}, {out / f'retrieval-{dataset}.png'}")
