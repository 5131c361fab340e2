"""CLI commands, one module per stage. Modules here import only typer and the standard library at import time."""

from __future__ import annotations

import importlib

import typer

# (module, function, command name): each module defines one Typer command function.
COMMANDS = (
    ("synth", "synth_command", "synth"),
    ("ingest", "ingest_command", "ingest"),
    ("train", "train_command", "train"),
    ("results", "results_command", "results"),
    ("evaluate", "evaluate_command", "evaluate"),
    ("audit", "audit_command", "audit"),
    ("report", "report_command", "report"),
    ("demo", "demo_command", "demo"),
    ("bench", "bench_command", "bench"),
)


def register_all(app: typer.Typer) -> None:
    for module_name, function_name, command_name in COMMANDS:
        try:
            module = importlib.import_module(f"pipeline.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pipeline.commands.{module_name}":
                raise
            continue  # stage not built yet
        app.command(command_name)(getattr(module, function_name))
