"""A tiny ingest directory (manifest + cache) generated in memory: for tests and benchmarks of the training stage,
independent of the synth and ingest stages.

Each image has a learnable disease signal (a bright patch inside the lung fields, present for label 1 with
probability ``signal``) and a position shortcut (a bright band across the top, "shoulders", for supine images) whose
agreement with the label differs per site, reversed at the test site: the same design as the synthetic cohort.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

DEFAULT_SITES = (("north", "train", 0.9), ("east", "train", 0.8), ("west", "train", 0.7),
                 ("valley", "ood_val", 0.3), ("harbour", "test", 0.1))


def write_toy_ingest(
    out: str | Path,
    *,
    sites: Sequence[tuple[str, str, float]] = DEFAULT_SITES,
    n_per_site: int = 40,
    size: int = 32,
    signal: float = 0.95,
    val_fraction: float = 0.25,
    seed: int = 0,
    unlabelled: Mapping[str, float] | None = None,
) -> Path:
    """Write ``out/manifest.parquet`` and ``out/cache/`` for ``sites`` = (name, role, position-label agreement);
    role ``train`` sites are split into train/val, ``ood_val`` and ``test`` sites are held out whole.

    ``unlabelled``: site -> fraction of its images whose label is unknown (``pd.NA``): its first
    ``round(fraction * n_per_site)`` images, both classes alike (labels alternate); the images are unchanged."""
    import pandas as pd

    from pipeline.cache import CACHE_DIRNAME, write_cache_info
    from pipeline.manifest import write_manifest

    out = Path(out)
    cache_dir = out / CACHE_DIRNAME
    cache_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    lungs = (((xx - 0.3) / 0.16) ** 2 + ((yy - 0.55) / 0.3) ** 2 < 1) | (((xx - 0.7) / 0.16) ** 2 + ((yy - 0.55) / 0.3) ** 2 < 1)
    band = yy < 0.15
    images, rows = [], []
    for site_index, (site, role, agreement) in enumerate(sites):
        for i in range(n_per_site):
            label = int(i % 2)
            agrees = rng.random() < agreement
            supine = bool(label) == agrees
            img = 0.25 + 0.05 * rng.standard_normal((size, size)) + 0.03 * site_index
            img[lungs] -= 0.1
            if label and rng.random() < signal or not label and rng.random() > signal:
                cy, cx = rng.integers(int(0.4 * size), int(0.7 * size)), rng.choice([int(0.3 * size), int(0.7 * size)])
                r = max(2, size // 10)
                img[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r] += 0.4
            if supine:
                img[band] += 0.35
            images.append(np.clip(img, 0, 1))
            split = role if role != "train" else ("val" if rng.random() < val_fraction else "train")
            known = i >= round((unlabelled or {}).get(site, 0.0) * n_per_site)
            rows.append({
                "image_id": f"{site}-{i:04d}", "path": f"{site}/{i:04d}.dcm", "patient_key": f"p{site}{i:04d}",
                "site": site, "modality": "DX", "manufacturer": "toy", "view": "AP" if supine else "PA",
                "position": "supine" if supine else "erect", "age_years": 50.0, "age_group": "adult",
                "sex": "F" if i % 3 else "M", "label": label if known else pd.NA,
                "label_name": ("COVID-19" if label else "No Finding") if known else "",
                "domain": site, "split": split, "lung_mask": "", "shortcut_mask": "", "lesion_mask": "",
                "source_sha256": "", "cache_index": len(rows), "counterfactual_index": -1,
            })
    stack = np.stack(images).astype(np.float16)
    np.save(cache_dir / "images.npy", stack)
    np.save(cache_dir / "lung_masks.npy", np.broadcast_to(lungs, stack.shape).astype(np.uint8))
    np.save(cache_dir / "shortcut_masks.npy", np.broadcast_to(band, stack.shape).astype(np.uint8))
    frame = pd.DataFrame(rows)
    frame["label"] = frame["label"].astype("Int64")  # pd.NA = unknown, as ingest writes it
    write_manifest(frame, out)
    write_cache_info(cache_dir, {"n": len(rows), "size": size, "dtype": "float16",
                                 "arrays": ["images", "lung_masks", "shortcut_masks"], "inputs_hash": "toy"})
    return out
