"""`caseplan ingest PATH... [--source NAME]`: load documents into the knowledge index."""

from __future__ import annotations

from pathlib import Path

import typer

from agent.cli.common import echo_json, fail, state, with_errors
from agent.tooling import open_knowledge_index
from tools.knowledge.documents import load_documents


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)


@with_errors
def ingest(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Files or folders (.md, .html, .txt, .jsonl)."),
    source: str = typer.Option("default", "--source", help="Source name; its documents missing from PATHs are removed."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Chunk, embed and index documents; unchanged documents are not embedded again."""
    source = source.strip()
    if not source or len(source) > 100 or "\x00" in source:
        fail("--source must be a name of 1 to 100 characters")
    documents, problems = load_documents(paths, source)
    for problem in problems:
        typer.echo(f"warning: {problem.origin}: {problem.message}", err=True)
    if not documents:
        fail("no usable documents found in the given paths")
    # A document left out by a problem is not a deleted one: removal waits for a clean read.
    hold_removals = any(problem.lost for problem in problems)
    index = open_knowledge_index(state(ctx).settings)
    bar = _LazyBar()
    try:
        report = index.ingest(documents, source=None if hold_removals else source, progress=bar.advance)
    finally:
        bar.close()
    for problem in report.refused:
        typer.echo(f"warning: {problem.origin}: {problem.message}", err=True)
    if hold_removals:
        typer.echo(
            f"warning: documents of source {source!r} missing from PATHs were kept, not removed, because some "
            "documents above could not be read; fix them and ingest again",
            err=True,
        )
    if as_json:
        echo_json(report.model_dump() | {"removals_held": hold_removals})
        return
    typer.echo(
        f"{len(documents)} documents from source {source!r}: {len(report.added)} added, {len(report.updated)} updated, "
        f"{report.unchanged} unchanged, {len(report.removed)} removed; {report.chunks} chunks in the index "
        f"({report.embedded_chunks} embedded now); {len(problems) + len(report.refused)} warnings"
    )


class _LazyBar:
    """A progress bar over the chunks to embed, opened when the index knows how many there are."""

    def __init__(self) -> None:
        self._bar = None

    def advance(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = typer.progressbar(length=total, label="embedding chunks", file=None)
            self._bar.__enter__()
        self._bar.update(done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
