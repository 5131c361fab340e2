"""`cxr-fishr report`: render index.html from the evaluate and audit outputs (any subset of them)."""

from __future__ import annotations

from pathlib import Path

import typer


def report_command(
    evaluate: Path | None = typer.Option(None, "--evaluate", help="Output directory of `cxr-fishr evaluate`."),
    audit: Path | None = typer.Option(None, "--audit", help="Output directory of `cxr-fishr audit`."),
    out: Path = typer.Option(..., "--out", help="Report directory (index.html and its figures), e.g. reports/NAME."),
    ingest: Path | None = typer.Option(
        None, "--ingest", help="Ingest directory for the cohort section (default: found through stage.json)."),
    title: str | None = typer.Option(None, "--title", help="Page title."),
    results: Path | None = typer.Option(None, "--results", help="A SWEEP_DIR where `cxr-fishr results` wrote "
                                                                "results.json: its tables get a section (any other "
                                                                "path: exit 2)."),
) -> None:
    """Write a self-contained HTML report (no network needed). A missing optional input is noted in the page; an
    input given explicitly that is not what its flag needs (no such folder, no metrics.json/audit.json, another
    stage's output) is an error (exit 2)."""
    from pipeline.errors import ConfigError
    from pipeline.report import run

    if evaluate is None and audit is None:
        raise ConfigError("report: --evaluate or --audit must be given, got neither. "
                          "Example: cxr-fishr report --evaluate runs/evaluate --audit runs/audit --out reports/demo")
    result = run(evaluate_dir=evaluate, audit_dir=audit, out=out, ingest_dir=ingest, title=title, results_dir=results)
    for line in result.warnings:
        typer.echo(f"warning: {line}", err=True)
    for line in result.missing:
        typer.echo(f"note: {line}", err=True)
    typer.echo(str(result.index))
