"""`audit`: does each model look at the lungs or at shortcuts? (docs/design/metrics.md, docs/audit.md)

``run(model_dirs=..., ingest_dir=..., out=...)`` writes ``audit.json``, ``overlays/*.png`` and ``stage.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.artefacts.audit import AuditFile
    from pipeline.audit.config import AuditConfig
    from pipeline.audit.data import AuditData
    from pipeline.runs import ModelEntry


@dataclass(frozen=True)
class AuditResult:
    """What ``run`` wrote: ``file`` is audit.json as its typed model (pipeline/artefacts/audit.py)."""

    out: Path
    audit_path: Path
    file: AuditFile

    @cached_property
    def audit(self) -> dict[str, Any]:
        """audit.json's content as a dict (for callers that index it: the CLI and older tests)."""
        return self.file.to_json_dict()


@dataclass
class _Audited:
    """What the per-model loop collects: the entries, landscapes (name -> ModelLandscape), overlays, warnings."""

    models: dict[str, Any] = field(default_factory=dict)
    landscapes: dict[str, Any] = field(default_factory=dict)
    overlays: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # counted in audit.json (n_warnings), printed by the command


def skipped_metrics(lung_source: str, has_shortcuts: bool, has_counterfactuals: bool,
                    lung_counts: dict[str, int] | None = None, n_unlabelled: int = 0) -> list[dict[str, str]]:
    """What the data cannot support, said out loud (the report lists it)."""
    skipped: list[dict[str, str]] = []
    counts = lung_counts or {}
    if lung_source != "none" and counts.get("absent"):
        skipped.append({"metric": "lung metrics on some images",
                        "reason": f"{counts['absent']} of {sum(counts.values())} images have no lung mask: lung "
                                  "numbers use the others only (n_lung_masks, n_measured)"})
    if n_unlabelled:
        skipped.append({"metric": "accuracies on unlabelled images",
                        "reason": f"{n_unlabelled} images have no label: attributions, localisation, region "
                                  "ablation, flips and probes use them; accuracies use the labelled ones only"})
    if lung_source == "none":
        reason = "the manifest has no lung masks (set lung_estimate: ellipses for a labelled estimate)"
        skipped += [{"metric": m, "reason": reason} for m in (
            "lung_mass_fraction", "lung_focus_ratio", "pointing_game", "lung_only_accuracy",
            "lungs_removed_accuracy", "region_ablation_share.lungs")]
    elif lung_source == "estimated":
        skipped.append({"metric": "lung masks", "reason": "estimated (two fixed ellipses): every lung number is "
                                                          "an estimate, not a measurement"})
    if not has_shortcuts:
        skipped += [{"metric": m, "reason": "the manifest has no shortcut masks"} for m in (
            "shortcut_mass_fraction", "shortcut_mass_fraction_per_kind", "region_ablation_share.<shortcut kinds>")]
    if not has_counterfactuals:
        skipped.append({"metric": "counterfactual_flip_rate", "reason": "the cache has no counterfactual arrays"})
    if lung_source == "none" and not has_shortcuts:
        skipped.append({"metric": "region_ablation_share", "reason": "no region masks at all"})
    return skipped


def _audit_config(config: Any) -> AuditConfig:
    """An AuditConfig from an AuditConfig, a YAML path or None (the defaults)."""
    from pipeline.audit.config import AuditConfig
    from pipeline.config import load_config

    if config is None:
        return AuditConfig()
    if isinstance(config, AuditConfig):
        return config
    return load_config(AuditConfig, config)


def _audit_model(entry: ModelEntry, data: AuditData, cfg: AuditConfig, *, out: Path, attributes: list[str],
                 audited: _Audited) -> None:
    """Audit one checkpoint into ``audited`` (its entry, overlays, threshold warning and landscape)."""
    from pipeline.audit.landscape.measure import measure_model, trained_sites
    from pipeline.audit.model_audit import audit_network
    from pipeline.decision_threshold import model_threshold

    network, _, meta = entry.load()
    # evaluate's threshold, by the same rule (the model's training domains' val rows on its own ingest, else the
    # stored one): one accuracy per checkpoint in both stages
    threshold = model_threshold(network=network, images=data.cache.images, manifest=data.manifest, meta=entry.meta,
                                ingest_hash=data.cache.info.get("inputs_hash"), split=cfg.split,
                                batch_size=cfg.batch_size * 4)
    if threshold.warning:
        audited.warnings.append(f"{entry.name}: {threshold.warning}")
    block, records = audit_network(network, data, cfg, name=entry.name, overlay_dir=out / "overlays",
                                   threshold=threshold, attributes=attributes)
    audited.models[entry.name] = {**entry.describe(), "split": cfg.split, **block}
    audited.overlays += records
    if cfg.landscape.enabled:
        audited.landscapes[entry.name] = measure_model(network, manifest=data.manifest, cache=data.cache,
                                                       cfg=cfg.landscape, batch_size=cfg.batch_size, seed=cfg.seed,
                                                       threshold=threshold.value, trained_on=trained_sites(meta))


def _audit_file(*, data: AuditData, cfg: AuditConfig, ingest_dir: str | Path, attributes: list[str],
                attribute_notes: list[str], audited: _Audited) -> AuditFile:
    """audit.json as its typed model (None, never NaN, where a number is unmeasured)."""
    from pipeline.artefacts.audit import AuditFile
    from pipeline.audit.landscape import landscape_settings, not_run
    from pipeline.config import dump_config
    from pipeline.protocol.shortcuts import labelled_mask
    from pipeline.regions import SHORTCUT_KINDS
    from pipeline.stage import to_jsonable

    models = audited.models
    n_split = len(data.frame)
    n_labelled = int(labelled_mask(data.frame).sum())
    audit = {
        "schema_version": AuditFile.SCHEMA_VERSION,
        "stage": "audit",
        "split": cfg.split,
        "ingest_dir": str(Path(ingest_dir).resolve()),  # absolute: the report may run from elsewhere
        "ingest_hash": data.cache.info.get("inputs_hash"),  # the report compares cohorts by it
        "lung_masks": data.lung_counts(),  # rows of the split by where their lung mask came from
        "lung_source": data.lung_source,    # "manifest" (some rows have masks), "estimated" or "none"
        "n_split": {"total": n_split, "labelled": n_labelled, "unlabelled": n_split - n_labelled},
        "shortcut_attributes": attributes,
        "shortcut_notes": attribute_notes,
        "shortcut_masks": data.has_shortcut_masks,
        "counterfactuals": data.has_counterfactuals,
        "shortcut_kinds": list(SHORTCUT_KINDS.values()),
        "n_images": {"attribution": min(cfg.max_images, n_split),
                     "interventions": min(cfg.max_intervention_images, n_split),
                     "probe": next(iter(models.values()))["probe_n_images"] if models else 0,
                     "sanity": min(cfg.sanity_images, cfg.max_images, n_split)},
        "skipped": skipped_metrics(data.lung_source, data.has_shortcut_masks, data.has_counterfactuals,
                                   data.lung_counts(), n_split - n_labelled),
        "warnings": audited.warnings,
        "n_warnings": len(audited.warnings),
        "config": dump_config(cfg),
        "models": models,
        "overlays": audited.overlays,
        "landscape": landscape_settings(cfg.landscape, audited.landscapes) if cfg.landscape.enabled
        else not_run("landscape.enabled is false in the audit config"),
    }
    return AuditFile.from_dict(to_jsonable(audit), where="audit.json (being written)")


def run(
    *,
    model_dirs: Sequence[str | Path],
    ingest_dir: str | Path,
    out: str | Path,
    config: Any = None,
    names: Sequence[str] | None = None,
    include_selected: bool = False,
) -> AuditResult:
    """Audit every model on the config's split of ``ingest_dir``; ``config`` is an AuditConfig, a YAML path or
    None (defaults). Selected checkpoints other than model.pt are audited only with ``include_selected``."""
    from tqdm.auto import tqdm

    from pipeline.audit.data import AuditData
    from pipeline.compat import check_models_compat
    from pipeline.protocol.shortcuts import shortcut_attributes
    from pipeline.runs import collect_models
    from pipeline.stage import StageRecord

    cfg = _audit_config(config)
    out = Path(out)
    data = AuditData.open(ingest_dir, cfg.split, cfg.lung_estimate)
    attributes, attribute_notes = shortcut_attributes(ingest_dir, data.manifest)
    entries = collect_models(model_dirs, names, include_selected=include_selected, stage="audit")
    audited = _Audited(warnings=list(check_models_compat(checkpoints=[e.checkpoint for e in entries],
                                                         ingest_dir=ingest_dir, stage="audit", split=cfg.split,
                                                         scored=data.frame)))
    inputs = {"ingest": Path(ingest_dir) / "manifest.parquet", **{f"model:{e.name}": e.checkpoint for e in entries}}
    with StageRecord("audit", out, config=cfg, seed=cfg.seed, inputs=inputs) as record:
        for entry in tqdm(entries, desc="audit", leave=False):
            _audit_model(entry, data, cfg, out=out, attributes=attributes, audited=audited)  # one model in memory
        audit = _audit_file(data=data, cfg=cfg, ingest_dir=ingest_dir, attributes=attributes,
                            attribute_notes=attribute_notes, audited=audited)
        audit_path = audit.write(out / "audit.json")
        record.extra["models"] = list(audited.models)
    return AuditResult(out=out, audit_path=audit_path, file=audit)
