"""Small-sample warnings (computed from the counts and intervals of the run, never fixed text)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

MIN_IMAGES = 30          # below this a per-site accuracy moves by > 3 points per image
MIN_PER_CLASS = 10       # below this one class's recall moves by > 10 points per image


def size_warning(what: str, *, n: int, n_pos: int, n_neg: int) -> str | None:
    """A warning when a set has fewer than MIN_IMAGES images or a class fewer than MIN_PER_CLASS; else None."""
    if n >= MIN_IMAGES and min(n_pos, n_neg) >= MIN_PER_CLASS:
        return None
    return (f"{what} is small: n={n} ({n_pos} positive, {n_neg} negative); numbers on fewer than {MIN_IMAGES} "
            f"images or {MIN_PER_CLASS} per class cannot separate models")


# what a site of each split is (the warnings name the split's role, not always "test site")
SPLIT_ROLES = {"test": "test site", "ood_val": "ood-validation site (ood_val)",
               "val": "validation site (val)", "train": "train-split site"}


def separation_warnings(models: dict[str, dict[str, Any]], *, split: str = "test") -> list[str]:
    """Per site of ``split``: a warning when the mean AUROC bootstrap interval width exceeds the AUROC gap between
    the best and the worst model (upper-bound entries left out): the site cannot rank these models."""
    entries = {n: e for n, e in models.items() if not e.get("upper_bound")}
    sites = sorted({s for e in entries.values() for s in e.get("per_site", {})})
    out: list[str] = []
    for site in sites:
        blocks = [e["per_site"][site] for e in entries.values() if site in e.get("per_site", {})]
        auroc = [b["auroc"] for b in blocks if np.isfinite(b["auroc"])]
        widths = [b["auroc_ci"][1] - b["auroc_ci"][0] for b in blocks if np.isfinite(b["auroc_ci"][0])]
        if len(auroc) < 2 or not widths:
            continue
        gap, width = max(auroc) - min(auroc), float(np.mean(widths))
        if width > gap:
            out.append(f"{SPLIT_ROLES.get(split, split + ' site')} {site}: the AUROC bootstrap interval (mean width {width:.3f}) is wider than the gap "
                       f"between models ({gap:.3f}): this site cannot rank the {len(auroc)} models with an AUROC here "
                       "(upper-bound entries left out)")
    return out


def split_warnings(*, manifest: pd.DataFrame, split: str, evaluated: pd.DataFrame) -> list[str]:
    """Size warnings for the threshold/selection sets (val, ood_val) and every evaluated site (labelled rows)."""
    from pipeline.protocol.shortcuts import label_values, labelled_mask

    out: list[str] = []

    def check(what: str, rows: pd.DataFrame) -> None:
        y = label_values(rows)[labelled_mask(rows)]
        message = size_warning(what, n=int(y.size), n_pos=int((y == 1).sum()), n_neg=int((y == 0).sum()))
        if message:
            out.append(message)

    for name, role in (("val", "threshold and training-domain selection set (val)"),
                       ("ood_val", "ood-validation selection set (ood_val)")):
        rows = manifest[manifest["split"] == name]
        if len(rows) or name == "val":
            check(role, rows)
    for site in sorted(evaluated["site"].astype(str).unique()):
        check(f"{SPLIT_ROLES.get(split, split + ' site')} {site}", evaluated[evaluated["site"].astype(str) == site])
    return out
