"""A complete, valid ingest ``summary.json`` (validated by :class:`pipeline.artefacts.ingest_summary.IngestSummary`)
built from the few numbers a report test is about, beside tests/helpers/stage_outputs.py's ``metrics.json``.
Unstated counts are zero and unstated lists empty: a test states every number it reads."""

from __future__ import annotations

from typing import Any


def factor(factor: str, scope: str, *, n: int, n_pos: int, not_measured: dict[str, str] | None = None,
           **given: Any) -> dict[str, Any]:
    """One ``confounding.factors`` entry: ``n`` labelled rows, ``n_pos`` positive; every measure in ``given``
    (auroc, cramers_v, chi2_p_value, accuracy, chance, lift, ...) as stated, the others None with a reason."""
    measures = ("auroc", "cramers_v", "chi2_p_value", "accuracy", "chance", "lift")
    block = {"factor": factor, "scope": scope, "n": n, "n_pos": n_pos, "n_neg": n - n_pos, "levels": {},
             **dict.fromkeys(measures), "auroc_ci95": None, "cramers_v_ci95": None, "small_n": False, **given}
    reasons = {k: "not stated by this test" for k in measures if block[k] is None}
    block["not_measured"] = {**reasons, **(not_measured or {})}
    return block


def confounding(*, factors: list[dict[str, Any]] | None = None, **given: Any) -> dict[str, Any]:
    return {"n_labelled": 0, "n_unlabelled": 0, "shortcut_attributes": [], "label_prevalence_per_domain": {},
            "p_label_given_attribute_per_site": {}, "factors": factors or [], "warning_auroc": 0.7,
            "warning_p_value": 0.01, "warning_lift": 0.15, "warnings": [], **given}


def ingest_summary(**given: Any) -> dict[str, Any]:
    """A whole summary.json; ``given`` replaces any top-level key (``confounding``: use confounding())."""
    from pipeline.artefacts.ingest_summary import IngestSummary

    data = {
        "schema_version": IngestSummary.SCHEMA_VERSION, "n_images": 0, "n_rejected": 0, "n_unlabelled": 0,
        "shortcut_attributes": [], "per_split": {}, "per_site": {}, "counts_site_position_label": {},
        "age_per_site": {}, "rejects_by_reason": {}, "decode_notes": {}, "duplicates": {"groups": 0, "images": 0},
        "confounding": confounding(), "source": "/source", "metadata": None, "counterfactual_source": None,
        "n_counterfactual": 0, "metadata_rows": 0, "metadata_rows_matched": 0,
        "metadata_rows_without_image": {"n": 0, "examples": []}, "metadata_duplicate_rows": 0,
        "conflicting_metadata_rows": 0, "path_fields": {}, "config_names_resolved": [], "domain_columns": ["site"],
        "test_sites": [], "ood_val_sites": [], "cache_size": 32, "skipped_non_image_files": {"n": 0, "examples": []},
        "merged_spellings": {}, "merged_spelling_images": {}, "conflicting_duplicate_labels": {"groups": 0,
                                                                                             "images": 0},
        "patient_identifiers_in_file_names": {"n": 0, "token": "PATIENT", "note": ""}, "field_disagreements": {},
    }
    data.update(given)
    IngestSummary.from_dict(data, where="tests/helpers/ingest_outputs.py")
    return data
