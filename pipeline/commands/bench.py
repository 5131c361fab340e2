"""`cxr-fishr bench TARGET`: performance figures as JSON (targets live here, never in timed unit tests)."""

from __future__ import annotations

import importlib

import typer

# target -> module in pipeline/benchmarks exposing `run(**options) -> dict`
TARGETS = ("synth", "ingest", "train", "audit")


def bench_command(
    target: str = typer.Argument(..., help=f"What to measure: one of {', '.join(TARGETS)}, or 'all'."),
    quick: bool = typer.Option(False, "--quick", help="Smaller problem sizes (smoke test of the benchmark itself)."),
) -> None:
    """Measure throughput of a stage and print JSON (with the target each figure is compared against)."""
    from pipeline.errors import ConfigError
    from pipeline.stage import dumps_strict

    chosen = TARGETS if target == "all" else (target,)
    if any(t not in TARGETS for t in chosen):
        raise ConfigError(f"bench: target must be one of {list(TARGETS) + ['all']}, got {target!r}.")
    results = {}
    for name in chosen:
        module = importlib.import_module(f"pipeline.benchmarks.{name}")
        results[name] = module.run(quick=quick)
        typer.echo(dumps_strict({name: results[name]}, indent=2))
