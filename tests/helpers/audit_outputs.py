"""A complete, valid ``audit.json`` (validated by :class:`pipeline.artefacts.audit.AuditFile`) built from the few
numbers a report test is about, beside tests/helpers/stage_outputs.py's ``metrics.json``.

Every unstated number is "not measured" with a reason (None plus ``not_measured[key]``), as audit writes it, never
an invented value: a test that states ``accuracy=0.8`` gets exactly that.
"""

from __future__ import annotations

from typing import Any

UNSTATED = "not stated by this test"
LOCALISATION = ("lung_mass_fraction", "shortcut_mass_fraction", "lung_focus_ratio", "pointing_game")
INTERVENTIONS = ("accuracy", "majority_accuracy", "lung_only_accuracy", "lung_only_majority_accuracy",
                 "lungs_removed_accuracy", "lungs_removed_majority_accuracy", "counterfactual_flip_rate")
REGIONS = ("rest", "lungs", "scapula_shoulder", "devices", "text_stamp", "site_mark", "collimation", "outside_lungs")


def _reasons(block: dict[str, Any], keys: tuple[str, ...], given: dict[str, str] | None) -> dict[str, str]:
    reasons = {k: UNSTATED for k in keys if block.get(k) is None}
    reasons.update(given or {})
    return {k: v for k, v in reasons.items() if block.get(k) is None}


def localisation(*, n: int = 8, not_measured: dict[str, str] | None = None, **given: Any) -> dict[str, Any]:
    """One Localisation block: ``n`` images, every fraction in ``given`` as stated."""
    block: dict[str, Any] = {"n": n, "n_valid": n, **dict.fromkeys(LOCALISATION),
                             "shortcut_mass_fraction_per_kind": None, **given}
    block["not_measured"] = _reasons(block, LOCALISATION, not_measured)
    return block


def method(*, overall: dict[str, Any] | None = None, **given: Any) -> dict[str, Any]:
    """One attribution method's block (``overall``: a localisation block)."""
    return {"overall": overall or localisation(), "per_site": {}, "per_position": {}, "per_label": {},
            "randomisation_rank_correlation": None, "not_measured": {"randomisation_rank_correlation": UNSTATED},
            "seconds_per_image": 0.01, **given}


def interventions(*, n: int = 10, not_measured: dict[str, str] | None = None, **given: Any) -> dict[str, Any]:
    """One Interventions block: ``n`` labelled images, every accuracy in ``given`` as stated."""
    block: dict[str, Any] = {"n": n, "n_labelled": n, "n_lung_masks": n, "n_labelled_lung_masks": n, **dict.fromkeys(INTERVENTIONS),
                             "constant_predictor": None, "lung_only_constant_predictor": None,
                             "lungs_removed_constant_predictor": None, "n_counterfactual": 0, **given}
    block["not_measured"] = _reasons(block, INTERVENTIONS, not_measured)
    return block


def region_shares(*, n: int = 10, not_measured: dict[str, str] | None = None, **given: Any) -> dict[str, Any]:
    """One RegionShares block: each region's share in ``given`` as stated, the rest not measured."""
    block: dict[str, Any] = {**dict.fromkeys(REGIONS), "n": n, "n_valid": n, **given}
    block["n_measured"] = {k: n for k in REGIONS if block.get(k) is not None}
    block["not_measured"] = _reasons(block, REGIONS, not_measured)
    return block


def audit_model(name: str, *, algorithm: str = "erm", seed: int | None = 0, selection_rule: str = "training_domain",
                split: str = "test", methods: dict[str, dict[str, Any]] | None = None,
                overall: dict[str, Any] | None = None, abs_share: dict[str, Any] | None = None,
                **given: Any) -> dict[str, Any]:
    """One audit.json model entry. ``methods``: method -> method(); ``overall``: the interventions' overall block
    (interventions()); ``abs_share``: the overall region_ablation_abs_share (region_shares()); ``given``: any other
    key as stated."""
    run = name.split("@")[0]
    entry = {
        "name": name, "run": run, "model_dir": f"/runs/{run}", "checkpoint": "model.pt", "algorithm": algorithm,
        "seed": seed, "step": 100, "weights_step": 100, "selection_rule": selection_rule,
        "selection": {"rule": selection_rule, "step": 100, "constant_predictor": False, "selected": True,
                      "reason": "selected", "source": "selection.json", "evaluations": 3},
        "upper_bound": selection_rule == "oracle", "split": split,
        "threshold": {"value": 0.5, "source": "val (training domains)", "n": 20, "n_pos": 10, "n_neg": 10,
                      "warning": None},
        "methods": methods or {},
        "interventions": {"overall": overall or interventions(), "per_site": {}},
        "region_ablation_share": None,
        "region_ablation_abs_share": {"overall": abs_share, "per_site": {}} if abs_share else None,
        "probe_balanced_accuracy": {}, "probe_chance": {}, "probe_notes": [], "probe_n_per_class": {},
        "probe_not_measured": {}, "probe_n_images": 0,
        "n_labelled": {"attribution": 8, "attribution_total": 8, "interventions": 10, "interventions_total": 10},
    }
    entry.update(given)
    return entry


def audit_json(models: dict[str, dict[str, Any]], *, split: str = "test", ingest_dir: str = "/ingest",
               lung_masks: dict[str, int] | None = None, **given: Any) -> dict[str, Any]:
    """A whole audit.json around ``models`` (name -> audit_model), landscape not run unless ``given`` says;
    validated by AuditFile (a DataError names the field a test got wrong)."""
    from pipeline.artefacts.audit import AuditFile
    from pipeline.audit.config import AuditConfig
    from pipeline.audit.landscape import not_run

    data = {
        "schema_version": AuditFile.SCHEMA_VERSION, "stage": "audit", "split": split, "ingest_dir": ingest_dir,
        "ingest_hash": None, "lung_masks": lung_masks or {"provided": 10, "estimated": 0, "absent": 0},
        "lung_source": "manifest", "n_split": {"total": 10, "labelled": 10, "unlabelled": 0},
        "shortcut_attributes": ["position"], "shortcut_notes": [], "shortcut_masks": True, "counterfactuals": False,
        "shortcut_kinds": [], "n_images": {"attribution": 8, "interventions": 10, "probe": 0, "sanity": 0},
        "skipped": [], "warnings": [], "n_warnings": 0, "config": AuditConfig().model_dump(mode="json"),
        "models": models, "overlays": [],
        "landscape": not_run("landscape.enabled is false in the audit config").model_dump(mode="json"),
    }
    data.update(given)
    AuditFile.from_dict(data, where="tests/helpers/audit_outputs.py")
    return data
