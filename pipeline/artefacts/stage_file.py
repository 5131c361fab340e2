"""``<stage output>/stage.json``: what ran, with what, from which inputs, on which versions (written last by
pipeline/stage.py's StageRecord, or by the stage runner for a stage without one; the runner adds ``fingerprint``).

The standard keys come first; then the keys a stage adds through ``record.extra`` (each typed here, present only in
the stage that writes it; :data:`EXTRA_KEYS` says which). Like selection.json it carries no ``schema_version``
key (its content predates the typed models and is kept as written): a file without one reads as version 1.
Seconds are wall-clock seconds; times are ISO 8601 UTC.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import ValidationError

from pipeline.artefacts.base import Artefact, Block, validation_problems
from pipeline.errors import DataError

# stage name -> the extra keys it writes (pipeline/<stage>: ``record.extra``), for the reader and the round-trip test
EXTRA_KEYS: dict[str, tuple[str, ...]] = {
    "synth": ("counts", "rendered", "kept", "workers", "images_per_second"),
    "ingest": ("counts",),
    "train": ("algorithm", "hparams", "training_domains", "final_step", "selection", "device", "amp",
              "median_step_seconds", "unlabelled_skipped", "warnings", "n_warnings"),
    "train_sweep": ("jobs", "ran", "failed", "n_failed", "selection", "engine", "test_hospitals", "warnings",
                    "n_warnings"),
    "evaluate": ("models", "n_images", "n_unlabelled_skipped"),
    "audit": ("models",),
    "report": ("missing", "figures", "warnings", "ingests"),
}


class StageInput(Block):
    """One input of the stage: the path as given and its content hash (pipeline/stage.py content_hash, or a hash the
    stage computed itself, e.g. ingest's metadata CSVs)."""

    path: str
    hash: str


class StageFile(Artefact):
    """<stage output>/stage.json. Keys after ``fingerprint`` are the stage's extras (absent in other stages)."""

    FILENAME: ClassVar[str] = "stage.json"
    STAGE: ClassVar[str] = "stage"
    SCHEMA_VERSION: ClassVar[int] = 1
    OMIT_WHEN_UNSET: ClassVar[frozenset[str]] = frozenset(
        {"fingerprint"} | {key for keys in EXTRA_KEYS.values() for key in keys})

    stage: str  # synth, ingest, train, train_sweep, evaluate, audit, report
    # the stage's resolved config as JSON (a stage's own config model dumped; the report's {"title": ...})
    config: dict[str, Any] | None
    seed: int | None
    started: str
    finished: str
    seconds: float
    inputs: dict[str, StageInput]
    versions: dict[str, str]  # package -> installed version
    git_commit: str | None  # "-dirty" appended when the tree had uncommitted changes; None outside a checkout
    command: list[str]  # sys.argv
    fingerprint: str | None = None  # what the stage runner's is_fresh compares; absent: never reused

    # synth
    counts: dict[str, Any] | None = None  # synth: site -> "position|label" -> images; ingest: n_images, n_rejected
    rendered: int | None = None
    kept: int | None = None
    workers: int | None = None
    images_per_second: float | None = None
    # train (one run)
    algorithm: str | None = None
    hparams: dict[str, Any] | None = None
    training_domains: list[str] | None = None
    final_step: int | None = None
    # a run's selection.json content (pipeline/artefacts/selection.py SelectionFile) or a sweep's per-rule choices
    selection: dict[str, Any] | None = None
    device: str | None = None
    amp: bool | None = None
    median_step_seconds: float | None = None
    unlabelled_skipped: dict[str, int] | None = None  # split -> rows without a label, left out
    # train_sweep
    jobs: int | None = None
    ran: int | None = None
    failed: dict[str, str] | None = None  # run folder -> error
    n_failed: int | None = None
    engine: str | None = None
    test_hospitals: list[str] | None = None
    # evaluate, audit
    models: list[str] | None = None
    n_images: int | None = None
    n_unlabelled_skipped: int | None = None
    # report
    missing: list[str] | None = None
    figures: list[str] | None = None
    ingests: dict[str, str] | None = None
    # train, train_sweep, report
    warnings: list[str] | None = None
    n_warnings: int | None = None

    @classmethod
    def from_dict(cls, data: Any, *, where: str | Path = "<memory>") -> Self:
        """Validate a parsed stage.json; a DataError names ``where``, the stage that wrote it and the bad fields."""
        stage = data.get("stage") if isinstance(data, dict) else None
        fix = f"Re-run `cxr-fishr {stage}` to rewrite it." if isinstance(stage, str) else "Re-run the stage that wrote it."
        if not isinstance(data, dict):
            raise DataError(f"stage.json: {where} must hold a JSON object, got {type(data).__name__}. {fix}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = validation_problems(exc)
            raise DataError(f"stage.json: {where} does not match StageFile: {problems}. {fix}") from None


def load_stage(directory: str | Path) -> StageFile | None:
    """``<directory>/stage.json`` as :class:`StageFile`; None when there is none (the stage never finished there).
    DataError naming the file when it is not JSON or does not match the model."""
    path = StageFile.path_in(directory)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"stage.json: {path} must be readable JSON, got {exc}. Re-run the stage that wrote it.") from None
    return StageFile.from_dict(data, where=path)
