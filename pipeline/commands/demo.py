"""`cxr-fishr demo`: the whole pipeline on the synthetic cohort, driven by one config file."""

from __future__ import annotations

from pathlib import Path

import typer


def demo_command(
    config: Path = typer.Option(Path("configs/demo.yaml"), "--config", help="The demo's config (configs/demo.yaml)."),
) -> None:
    """synth -> ingest -> train (ERM, Fishr; seeds in parallel) -> evaluate + audit -> report (reports/demo/).

    Finished stages whose inputs did not change are reused, so a second run only redoes what changed.
    """
    from pipeline.demo import format_headline, run

    result = run(config=config, echo=lambda line: typer.echo(line, err=True))
    typer.echo(format_headline(result.summary))
    typer.echo(f"Report: {result.report.resolve()}")
    typer.echo(f"Summary: {result.summary_path}")
