"""Counterfactual pairs from the ingest cache: the same patient in both positions, side by side with lung contours.

Only the cache arrays and non-identifying manifest columns are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.protocol.labels import LABEL_NAMES as LABELS

PAIR_COLUMNS = ("image_id", "split", "site", "position", "label", "cache_index", "counterfactual_index")
# What a counterfactual changes is known only where synth rendered it; supplied pairs are described as supplied.
SYNTHETIC_PAIRS = ("synth rendered both from the same patient: same anatomy and disease; only shoulders, devices "
                   "and stamps change.")
SUPPLIED_PAIRS = "The counterfactuals were supplied with the data; what else differs between the two is not known."


def choose_pairs(frame: Any, *, split: str, prefer: Sequence[str] = (), max_pairs: int = 4) -> list[int]:
    """Row positions of up to ``max_pairs`` images with a counterfactual: preferred ids first, then one per
    position x label stratum in turn."""
    rows = frame[(frame["split"].astype(str) == split) & (frame["counterfactual_index"].astype(int) >= 0)]
    if not len(rows):
        return []
    preferred = set(map(str, prefer))
    rows = rows.assign(_pref=~rows["image_id"].astype(str).isin(preferred)).sort_values(["_pref", "image_id"])
    chosen: list[int] = []
    strata = rows.groupby(["position", "label"], sort=True)
    queues = [list(group.index) for _, group in strata]
    while len(chosen) < max_pairs and any(queues):
        for queue in queues:
            if queue and len(chosen) < max_pairs:
                chosen.append(queue.pop(0))
    return chosen


def _pair_rows(ingest_dir: Path) -> tuple[Any, Any] | None:
    """(the ingest's ImageCache, the manifest's PAIR_COLUMNS) when the cache holds counterfactual images, else None."""
    import pyarrow.parquet as pq

    from pipeline.cache import ImageCache
    from pipeline.errors import DataError

    manifest = ingest_dir / "manifest.parquet"
    try:
        cache = ImageCache.open(ingest_dir)
    except DataError:
        return None
    if not cache.has_counterfactuals or not manifest.is_file():
        return None
    if not set(PAIR_COLUMNS) <= set(pq.read_schema(manifest).names):
        return None
    return cache, pq.read_table(manifest, columns=list(PAIR_COLUMNS)).to_pandas()


def _draw_pairs(cache: Any, frame: Any, chosen: list[int], path: Path) -> None:
    """Each chosen image beside its counterfactual, lungs outlined, written as a PNG at ``path``."""
    from pipeline.report.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2 * len(chosen), figsize=(2.0 * 2 * len(chosen), 2.5), squeeze=False)
    cf_lungs = cache.get("counterfactual_lung_masks")
    for k, row_id in enumerate(chosen):
        row = frame.loc[row_id]
        i, j = int(row["cache_index"]), int(row["counterfactual_index"])
        other = "supine" if row["position"] == "erect" else "erect"
        panels = ((cache.images[i], cache.lung_masks[i], str(row["position"])),
                  (cache.get("counterfactual_images")[j], cf_lungs[j] if cf_lungs is not None else None, other))
        for m, (image, lungs, position) in enumerate(panels):
            ax = axes[0][2 * k + m]
            ax.imshow(image.astype("float32"), cmap="gray", vmin=0, vmax=1)
            if lungs is not None and lungs.any():
                ax.contour(lungs.astype("float32"), levels=[0.5], colors="#40c0ff", linewidths=0.8)
            ax.set_title(f"{position}" + (f"\n{row['site']} · {LABELS.get(int(row['label']), row['label'])}"
                                          if m == 0 else "\n(counterfactual)"), fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)


def pairs_figure(ingest_dir: Path, out: Path, *, split: str = "test", prefer: Sequence[str] = (),
                 max_pairs: int = 4, synthetic: bool = False) -> dict[str, Any] | None:
    """Write ``fig_counterfactual_pairs.png`` (None when the cache has no counterfactual images)."""
    found = _pair_rows(ingest_dir)
    if found is None:
        return None
    cache, frame = found
    chosen = choose_pairs(frame, split=split, prefer=prefer, max_pairs=max_pairs)
    if not chosen:
        return None
    _draw_pairs(cache, frame, chosen, out / "fig_counterfactual_pairs.png")
    return {"src": "fig_counterfactual_pairs.png", "alt": "counterfactual pairs",
            "caption": "Counterfactual pairs: each image (left) beside its counterfactual in the other position "
                       "(right). " + (SYNTHETIC_PAIRS if synthetic else SUPPLIED_PAIRS) + " Blue: lungs."}
