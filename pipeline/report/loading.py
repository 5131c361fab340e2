"""Find and read everything a report can show, tolerating any subset: an input not given or not found becomes a
sentence; an input given explicitly that is not its stage's output is a DataError.

The evaluate and audit directories are given; everything else is found through what their typed outputs declare
(pipeline/artefacts): the ingest directory is ``MetricsFile.ingest_dir`` (else ``AuditFile.ingest_dir``) unless
``--ingest`` names one, the training runs are each model entry's ``model_dir``, and the synthetic cohort is the
ingest's declared ``IngestSummary.source`` (its folder or that folder's parent, when a synth ``stage.json`` is there).
A file that exists but does not match its model (an older schema, a broken file) is a DataError naming the file,
the field and the stage to re-run.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.artefacts.stage_file import StageFile, load_stage
from pipeline.errors import DataError

if TYPE_CHECKING:
    from pipeline.artefacts.audit import AuditFile
    from pipeline.artefacts.ingest_summary import IngestSummary
    from pipeline.artefacts.metrics import MetricsFile


@dataclass
class ReportInputs:
    """What every report section receives. ``metrics``, ``audit`` and ``ingest_summary`` are the typed stage outputs
    (None: the file is absent, and ``missing`` says so)."""

    evaluate_dir: Path | None = None
    audit_dir: Path | None = None
    ingest_dir: Path | None = None
    synth_dir: Path | None = None
    metrics: MetricsFile | None = None
    audit: AuditFile | None = None
    ingest_summary: IngestSummary | None = None
    rejects: list[dict[str, str]] | None = None
    cohort: Any = None  # pandas DataFrame: the manifest's non-identifying columns (COHORT_COLUMNS), or None
    stages: dict[str, StageFile] = field(default_factory=dict)  # label -> stage.json
    run_dirs: dict[str, Path] = field(default_factory=dict)  # training run name -> directory
    missing: list[str] = field(default_factory=list)


def _declared_ingest(metrics: MetricsFile | None, audit: AuditFile | None) -> Path | None:
    """The ingest folder evaluate (else audit) declares, when it still holds its manifest."""
    for artefact in (metrics, audit):
        if artefact is not None and (Path(artefact.ingest_dir) / "manifest.parquet").is_file():
            return Path(artefact.ingest_dir)
    return None


def _declared_runs(metrics: MetricsFile | None, audit: AuditFile | None) -> dict[str, Path]:
    """{run folder name: folder} of every model entry's ``model_dir`` that still holds its stage.json."""
    runs: dict[str, Path] = {}
    for artefact in (metrics, audit):
        for entry in artefact.models.values() if artefact is not None else ():
            directory = Path(entry.model_dir)
            if (directory / "stage.json").is_file():
                runs.setdefault(directory.name, directory)
    return runs


def _declared_synth(summary: IngestSummary | None) -> Path | None:
    """The synth output folder behind the ingest's declared source (the folder itself or its parent)."""
    if summary is None:
        return None
    sources = summary.source if isinstance(summary.source, list) else [summary.source]
    for source in sources:
        for candidate in (Path(source), Path(source).parent):
            stage = load_stage(candidate)
            if stage is not None and stage.stage == "synth":
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


def _load_given(got: ReportInputs, label: str, directory: str | Path | None) -> None:
    """Read the evaluate or audit folder the user named into ``got`` (its artefact and stage.json)."""
    from pipeline.artefacts.audit import AuditFile
    from pipeline.artefacts.metrics import MetricsFile

    model = MetricsFile if label == "evaluate" else AuditFile
    if directory is None:
        got.missing.append(f"No {label} directory was given, so the report has no {label} results.")
        return
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"report: --{label} must be an existing directory, got {str(directory)!r}. "
                        f"Run `cxr-fishr {label} ... --out {directory}` first.")
    path = model.path_in(directory)
    stage = load_stage(directory)
    if (stage is not None and stage.stage != label) or not path.is_file():
        raise DataError(_wrong_input_message(label, directory, path, stage))
    data = model.load(path)
    if stage is None:
        got.missing.append(f"{directory / 'stage.json'} does not exist: provenance of the {label} stage unknown.")
    else:
        got.stages[label] = stage
    setattr(got, f"{label}_dir", directory)
    setattr(got, "metrics" if label == "evaluate" else "audit", data)


# what a folder holds, by the file each stage writes there (used when it has no stage.json to say so)
_STAGE_FILES = (("metrics.json", "evaluate"), ("audit.json", "audit"), ("manifest.parquet", "ingest"),
                ("sweep.json", "train --sweep"), ("model.pt", "train"), ("results.json", "results"),
                ("index.html", "report"))


def folder_holds(directory: Path, stage: StageFile | None = None) -> str | None:
    """The command whose output ``directory`` holds: its stage.json's stage (``stage``, loaded here when None), else
    the stage whose file lies there (``_STAGE_FILES``); None when neither tells."""
    stage = stage if stage is not None else load_stage(directory)
    held = stage.stage if stage is not None else next(
        (name for file, name in _STAGE_FILES if (directory / file).exists()), None)
    return "train --sweep" if held == "train_sweep" else held  # the stage name a sweep's stage.json records


def _wrong_input_message(label: str, directory: Path, path: Path, stage: StageFile | None) -> str:
    """Why the folder given as ``--<label>`` is not that stage's output: what it holds (its stage.json's stage, else
    the stage whose file it holds, else nothing) and the fix."""
    other = "audit" if label == "evaluate" else "evaluate"
    held = folder_holds(directory, stage)
    if held == label:  # the stage.json says so, but its file is absent: the stage did not finish writing it
        what = f"the output of an unfinished `cxr-fishr {label}` (stage.json, no {path.name})"
        fix = f"Re-run `cxr-fishr {label} ... --out {directory}`"
    elif held is not None:
        source = "its stage.json" if stage is not None else "the files in it"
        what = f"the output of `cxr-fishr {held}` ({source}), not of {label}"
        fix = (f"Were --{label} and --{other} swapped? Pass the --out of `cxr-fishr {label}` to --{label}"
               if held == other else f"Pass the --out of `cxr-fishr {label}` to --{label}")
    else:
        what = f"no {path.name} and no stage.json" + ("" if any(directory.iterdir()) else " (an empty folder)")
        fix = f"Run `cxr-fishr {label} ... --out {directory}` first, or leave --{label} out"
    return f"report: --{label} must be a folder holding {path.name}, got {str(directory)!r}: {what}. {fix}."


def _load_ingest(got: ReportInputs, ingest_dir: Path) -> None:
    """Read the ingest folder (summary, rejects, cohort columns, stage.json) and the synth folder behind it."""
    from pipeline.artefacts.ingest_summary import IngestSummary

    got.ingest_dir = ingest_dir
    summary = IngestSummary.path_in(ingest_dir)
    got.ingest_summary = IngestSummary.load(summary) if summary.is_file() else None
    if got.ingest_summary is None:
        got.missing.append(f"{summary} does not exist: cohort counts unavailable.")
    got.rejects = _read_rejects(ingest_dir / "rejects.csv")
    got.cohort = _read_cohort(ingest_dir)
    ingest_stage = load_stage(ingest_dir)
    if ingest_stage is not None:
        got.stages["ingest"] = ingest_stage
        got.synth_dir = _declared_synth(got.ingest_summary)
        synth_stage = load_stage(got.synth_dir) if got.synth_dir is not None else None
        if synth_stage is not None:
            got.stages["synth"] = synth_stage


def load_inputs(
    *, evaluate_dir: str | Path | None, audit_dir: str | Path | None, ingest_dir: str | Path | None = None
) -> ReportInputs:
    """Read what exists; every absent optional piece is named in ``missing`` (the report says so). DataError: a
    given --evaluate/--audit folder that does not exist, lacks its file (metrics.json, audit.json) or holds another
    stage's output (its stage.json), or an artefact that does not match its model."""
    got = ReportInputs()
    _load_given(got, "evaluate", evaluate_dir)
    _load_given(got, "audit", audit_dir)
    found_ingest = Path(ingest_dir) if ingest_dir is not None else _declared_ingest(got.metrics, got.audit)
    if found_ingest is None:
        got.missing.append("The ingest directory was not found (pass --ingest DIR): no cohort section.")
    else:
        _load_ingest(got, found_ingest)
    got.run_dirs = _declared_runs(got.metrics, got.audit)
    for name, directory in sorted(got.run_dirs.items()):
        stage = load_stage(directory)
        if stage is not None:
            got.stages[f"train: {name}"] = stage
    return got
