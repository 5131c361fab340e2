"""The models to evaluate or audit: one entry per run's ``model.pt`` plus its other selected checkpoints.

Shared by ``evaluate`` and ``audit`` so both name, label and load models the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.artefacts.model_meta import ModelMeta
from pipeline.artefacts.selection import SelectionFile, SelectionTruth
from pipeline.errors import ConfigError, DataError
from pipeline.protocol.selection import is_upper_bound


@dataclass(frozen=True)
class ModelEntry:
    """One checkpoint to score: where it is, what it is and the protocol that picked it."""

    name: str
    run: str
    model_dir: Path
    checkpoint: Path
    selection_rule: str
    algorithm: str = "unknown"
    seed: int | None = None
    step: int | None = None  # the step of the weights in the file (final weights when nothing was selected)
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # the train stage's selection truth: {rule, step, constant_predictor, selected, reason} (selection_truth)
    selection: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def upper_bound(self) -> bool:
        return is_upper_bound(self.selection_rule)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run": self.run,
            "model_dir": str(self.model_dir),
            "checkpoint": str(self.checkpoint.relative_to(self.model_dir)) if self.checkpoint.is_relative_to(
                self.model_dir) else str(self.checkpoint),
            "algorithm": self.algorithm,
            "seed": self.seed,
            # the selected step (None when the rule selected nothing); weights_step: the weights actually scored
            "step": self.selection.get("step", self.step) if self.selection else self.step,
            "weights_step": self.step,
            "selection_rule": self.selection_rule,
            "selection": dict(self.selection),
            "upper_bound": self.upper_bound,
        }

    def load(self):
        """(network, ModelConfig, meta) in eval mode on CPU."""
        from pipeline.models import load_model

        return load_model(self.checkpoint)


def _read_meta(checkpoint: Path, *, stage: str = "evaluate") -> ModelMeta:
    """The model file's meta, validated (pipeline/artefacts/model_meta.py); a DataError names the file."""
    from pipeline.models.network import read_torch_file

    payload = read_torch_file(checkpoint, stage=stage)
    return ModelMeta.from_meta(payload.get("meta", {}) if isinstance(payload, dict) else {}, where=str(checkpoint))


def _read_selection(model_dir: Path) -> SelectionFile | None:
    """RUN/selection.json (None when absent: a model file outside a run dir, or an older run); a broken file is a
    DataError naming it."""
    path = SelectionFile.path_in(model_dir)
    return SelectionFile.load(path) if path.is_file() else None


def selection_truth(*, model_dir: Path, meta: ModelMeta | dict[str, Any], rule: str, main: bool) -> dict[str, Any]:
    """{rule, step, constant_predictor, selected, reason, source, evaluations} of one checkpoint as the train stage
    decided it (pipeline/artefacts/selection.py SelectionTruth): RUN/selection.json's entry for ``rule`` (``main``:
    model.pt), else the model file's meta. A rule that selected nothing (every evaluation a constant predictor)
    stays unselected here: step None, never the final step."""
    meta = meta if isinstance(meta, ModelMeta) else ModelMeta.from_meta(meta, where=f"{model_dir} model meta")
    selection = _read_selection(model_dir)
    recorded = selection.rules().get(rule) if selection is not None else None
    weights_step = meta.step
    flagged = bool(meta.constant_predictor)
    if recorded is not None:
        step, constant, source = recorded.step, bool(recorded.constant_predictor), "selection.json"
        reason = recorded.reason or (  # selection.json of older versions records no reason
            f"selected at step {step} (selection.json)" if step is not None else
            "every evaluation predicted one class on the rule's selection set (constant predictor)" if constant else
            "selection.json records no selected step")
    else:  # no selection.json: the meta train writes into every model file
        constant, source = flagged, "model meta"
        step = None if constant else weights_step
        reason = ("the model file is flagged constant_predictor" if constant else
                  f"step {step} per the model file (no selection.json beside it)" if step is not None else
                  "the model file records no step")
    if step is None and main:
        reason = (f"no checkpoint selected: {reason}; model.pt holds the final weights (step {weights_step})"
                  if not reason.startswith("no checkpoint selected") else reason)
    # constant_predictor: train's selection found every evaluation constant (at its arg-max cut-off on the rule's
    # selection set); never evaluate's own flag on the scored split (selection_facts.py keeps the two apart)
    truth = SelectionTruth(rule=rule, step=step, constant_predictor=constant or flagged, selected=step is not None,
                           reason=reason, source=source,
                           evaluations=recorded.evaluations if recorded is not None else None)
    return truth.model_dump(mode="json")


def _entry(name: str, run: str, model_dir: Path, checkpoint: Path, rule: str | None, *, stage: str) -> ModelEntry:
    meta = _read_meta(checkpoint, stage=stage)
    resolved = str(rule or meta.selection_rule or "unknown")
    return ModelEntry(
        name=name,
        run=run,
        model_dir=model_dir,
        checkpoint=checkpoint,
        selection_rule=resolved,
        algorithm=meta.algorithm or "unknown",
        seed=meta.seed,
        step=meta.step,
        meta=meta.to_dict(),
        selection=selection_truth(model_dir=model_dir, meta=meta, rule=resolved, main=rule is None),
    )


def collect_models(
    model_dirs: Sequence[str | Path], names: Sequence[str] | None = None, *, include_selected: bool = True,
    stage: str = "evaluate",
) -> list[ModelEntry]:
    """Entries for ``model_dirs`` (each a run dir with model.pt, or a .pt file); names default to the dir names."""
    if not model_dirs:
        raise ConfigError(f"{stage}: model_dirs must name at least one run directory, got none.")
    _check_run_folders(model_dirs, names, stage=stage)
    if names is not None and len(names) != len(model_dirs):
        raise ConfigError(
            f"{stage}: --name must be given once per model dir (repeat the flag: --name A --name B), got "
            f"{len(names)} names {list(names)} for {len(model_dirs)} dirs {[str(d) for d in model_dirs]}."
        )
    entries: list[ModelEntry] = []
    for i, raw in enumerate(model_dirs):
        path = Path(raw)
        checkpoint = path if path.is_file() else path / "model.pt"
        model_dir = path.parent if path.is_file() else path
        run = names[i] if names is not None else (path.stem if path.is_file() else path.name)
        main = _entry(run, run, model_dir, checkpoint, None, stage=stage)
        entries.append(main)
        selected = model_dir / "selected"
        if include_selected and path.is_dir() and selected.is_dir():
            for rule_file in sorted(selected.glob("*.pt")):
                rule = rule_file.stem
                if rule == main.selection_rule:
                    continue  # model.pt already is this rule's choice
                entries.append(_entry(f"{run}@{rule}", run, model_dir, rule_file, rule, stage=stage))
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise ConfigError(f"{stage}: model names must be unique, got {entry.name!r} twice. Pass --name per run.")
        seen.add(entry.name)
    return entries


def _check_run_folders(model_dirs: Sequence[str | Path], names: Sequence[str] | None, *, stage: str) -> None:
    """DataError for the first argument that is neither a run folder (with model.pt) nor a .pt file. With --name
    given, such an argument is most likely a second name typed after one --name (``--name erm fishr``): say so
    rather than read it as a model dir."""
    for raw in model_dirs:
        path = Path(raw)
        if path.is_dir() and ((path / "sweep.json").is_file() or any(path.glob("*/sweep.json"))):
            raise DataError(_sweep_folder_message(path, stage=stage))
        if (path.is_file() and path.suffix == ".pt") or (path / "model.pt").is_file():
            continue
        what = "no such file or folder" if not path.exists() else (
            "a folder without model.pt" if path.is_dir() else "a file that is not a .pt model")
        hint = (f" If {str(raw)!r} is meant as a model name, repeat --name once per model: --name "
                + " --name ".join([*names, str(raw)]) + "." if names else "")
        raise DataError(f"{stage}: every model dir must be a run folder holding model.pt (or a .pt file), got "
                        f"{str(raw)!r}: {what}. Train with `cxr-fishr train` first.{hint}")


def _sweep_folder_message(path: Path, *, stage: str) -> str:
    """Why a sweep's folder (its sweep.json; or a folder of per-algorithm sweeps) is not a model dir, and which
    folders to pass instead: its run folders (a few named) or `cxr-fishr results` for the sweep's tables."""
    runs = sorted(p.parent for p in path.glob("runs/*/model.pt")) or sorted(
        p.parent for p in path.glob("*/runs/*/model.pt"))
    shown = " ".join(str(r) for r in runs[:3]) + (f" ... ({len(runs)} run folders)" if len(runs) > 3 else "")
    what = "a sweep folder (sweep.json)" if (path / "sweep.json").is_file() else "a folder of sweeps (*/sweep.json)"
    return (f"{stage}: every model dir must be a training run folder holding model.pt, got {str(path)!r}: {what}, "
            f"whose selection.json and model.pt are the sweep's choice across its runs, not one run's. Pass its run "
            f"folders instead ({shown or 'under runs/'}), or tabulate the sweep with `cxr-fishr results {path}`.")
