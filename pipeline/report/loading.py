"""Find and read everything a report can show, tolerating any subset: a missing input becomes a sentence.

The evaluate and audit directories are given; the ingest directory, the training runs and the synthetic cohort are
found through the ``inputs`` recorded in each ``stage.json`` (or given explicitly).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import DataError


@dataclass
class ReportInputs:
    evaluate_dir: Path | None = None
    audit_dir: Path | None = None
    ingest_dir: Path | None = None
    synth_dir: Path | None = None
    metrics: dict[str, Any] | None = None
    audit: dict[str, Any] | None = None
    ingest_summary: dict[str, Any] | None = None
    rejects: list[dict[str, str]] | None = None
    cohort: Any = None  # pandas DataFrame: the manifest's non-identifying columns (COHORT_COLUMNS), or None
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> stage.json
    run_dirs: dict[str, Path] = field(default_factory=dict)  # training run name -> directory
    missing: list[str] = field(default_factory=list)


def read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"report: {path} must be valid JSON, got an unreadable file ({exc}). Re-run its stage.") from exc
    return data if isinstance(data, dict) else None


def _input_paths(stage: dict[str, Any]) -> list[tuple[str, Path]]:
    """(key, path) of every input a stage.json recorded (``{"key": {"path": ..., "hash": ...}}``)."""
    found = []
    for key, value in (stage.get("inputs") or {}).items():
        path = value.get("path") if isinstance(value, dict) else value
        if isinstance(path, str) and path:
            found.append((str(key), Path(path)))
    return found


def _find_ingest(stages: list[dict[str, Any]], results: list[dict[str, Any] | None]) -> Path | None:
    """The ingest directory named by a stage's inputs, or by a result's ``ingest_dir`` key."""
    candidates = [p for stage in stages for _, path in _input_paths(stage) for p in (path, path.parent)]
    candidates += [Path(r["ingest_dir"]) for r in results if r and isinstance(r.get("ingest_dir"), str)]
    for candidate in candidates:
        if (candidate / "manifest.parquet").is_file():
            return candidate
    return None


def _find_runs(stages: list[dict[str, Any]], metrics: dict[str, Any] | None) -> dict[str, Path]:
    runs: dict[str, Path] = {}
    for stage in stages:
        for _, path in _input_paths(stage):
            for candidate in (path, path.parent, path.parent.parent):
                if (candidate / "model.pt").is_file() and (candidate / "stage.json").is_file():
                    runs.setdefault(candidate.name, candidate)
                    break
    for entry in _model_entries(metrics):
        directory = entry.get("run_dir") or entry.get("model_dir")
        if isinstance(directory, str) and (Path(directory) / "stage.json").is_file():
            runs.setdefault(Path(directory).name, Path(directory))
    return runs


def _model_entries(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    models = (data or {}).get("models")
    if isinstance(models, dict):
        return [v for v in models.values() if isinstance(v, dict)]
    if isinstance(models, list):
        return [v for v in models if isinstance(v, dict)]
    return []


def _find_synth(ingest_stage: dict[str, Any]) -> Path | None:
    for _, path in _input_paths(ingest_stage):
        for candidate in (path, path.parent):
            stage = read_json(candidate / "stage.json")
            if stage and stage.get("stage") == "synth":
                return candidate
    return None


def _read_rejects(path: Path) -> list[dict[str, str]] | None:
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as handle:
        return [dict(row) for row in csv.DictReader(handle)]


# Only these manifest columns are read: nothing that identifies a patient (no paths, ids or patient keys).
COHORT_COLUMNS = ("site", "split", "position", "view", "label", "age_years", "age_group", "sex", "domain")


def _read_cohort(ingest_dir: Path) -> Any:
    path = ingest_dir / "manifest.parquet"
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    present = set(pq.read_schema(path).names)
    return pq.read_table(path, columns=[c for c in COHORT_COLUMNS if c in present]).to_pandas()


def load_inputs(
    *, evaluate_dir: str | Path | None, audit_dir: str | Path | None, ingest_dir: str | Path | None = None
) -> ReportInputs:
    """Read what exists; every absent piece is named in ``missing`` (the report says so instead of failing)."""
    got = ReportInputs()
    given_stages: list[dict[str, Any]] = []
    for label, directory, filename in (("evaluate", evaluate_dir, "metrics.json"), ("audit", audit_dir, "audit.json")):
        if directory is None:
            got.missing.append(f"No {label} directory was given, so the report has no {label} results.")
            continue
        directory = Path(directory)
        if not directory.is_dir():
            raise DataError(f"report: --{label} must be an existing directory, got {str(directory)!r}. "
                            f"Run `cxr-fishr {label} ... --out {directory}` first.")
        data = read_json(directory / filename)
        stage = read_json(directory / "stage.json")
        if data is None:
            got.missing.append(f"{directory / filename} does not exist: the {label} stage did not finish there.")
        if stage is None:
            got.missing.append(f"{directory / 'stage.json'} does not exist: provenance of the {label} stage unknown.")
        else:
            got.stages[label] = stage
            given_stages.append(stage)
        setattr(got, f"{label}_dir", directory)
        setattr(got, "metrics" if label == "evaluate" else "audit", data)

    found_ingest = Path(ingest_dir) if ingest_dir is not None else _find_ingest(given_stages, [got.metrics, got.audit])
    if found_ingest is None:
        got.missing.append("The ingest directory was not found (pass --ingest DIR): no cohort section.")
    else:
        got.ingest_dir = found_ingest
        got.ingest_summary = read_json(found_ingest / "summary.json")
        if got.ingest_summary is None:
            got.missing.append(f"{found_ingest / 'summary.json'} does not exist: cohort counts unavailable.")
        got.rejects = _read_rejects(found_ingest / "rejects.csv")
        got.cohort = _read_cohort(found_ingest)
        ingest_stage = read_json(found_ingest / "stage.json")
        if ingest_stage:
            got.stages["ingest"] = ingest_stage
            got.synth_dir = _find_synth(ingest_stage)
            if got.synth_dir is not None:
                got.stages["synth"] = read_json(got.synth_dir / "stage.json") or {}

    got.run_dirs = _find_runs(given_stages, got.metrics)
    for name, directory in sorted(got.run_dirs.items()):
        stage = read_json(directory / "stage.json")
        if stage:
            got.stages[f"train: {name}"] = stage
    return got
