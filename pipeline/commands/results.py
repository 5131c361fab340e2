"""`cxr-fishr results SWEEP_DIR [--out DIR]`: DomainBed/WILDS-style tables (Markdown, LaTeX, CSV, JSON) of sweeps."""

from __future__ import annotations

from pathlib import Path

import typer


def results_command(
    sweep_dir: Path = typer.Argument(..., help="A sweep's --out (sweep.json), or a folder of sweeps (one per "
                                               "algorithm, each with sweep.json)."),
    out: Path = typer.Option(None, "--out", help="Where to write results.{md,tex,json} and results_table.csv "
                                                 "(default: SWEEP_DIR)."),
) -> None:
    """Per selection rule x test hospital: test accuracy mean ± sd over seeds, average, worst hospital, and the
    hparams each rule chose."""
    from pipeline.results import build_tables, collect_runs, write_tables

    runs, sweeps, notes = collect_runs(sweep_dir)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    tables = build_tables(runs, sweeps, notes)
    for note in tables.notes[len(notes):]:  # build_tables' own, e.g. a test column whose ingest could not be read
        typer.echo(f"note: {note}", err=True)
    paths = write_tables(tables, out or sweep_dir)
    typer.echo(f"results: {len(runs)} runs of {len(tables.algorithms)} algorithms over {len(tables.hospitals)} test "
               f"hospitals, {len(tables.rules)} selection rules -> {paths['markdown']}, {paths['latex']}, "
               f"{paths['csv']}, {paths['json']}")
