"""The tests' one factory of tiny ingest directories (manifest + cache in pipeline/cache.py's layout, built by hand,
without the synth and ingest stages) and hand-built networks whose evidence is known by construction: one reads only
the lungs, one only a shortcut (a burned-in stamp)."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from math import floor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from pipeline.cache import write_cache_info
from pipeline.manifest import write_manifest
from pipeline.models import Classifier, ModelConfig, build_network, save_model
from pipeline.regions import SHORTCUT_CODES
from tests.helpers.stage_record import stage_json

# site -> (split plan, P(position agrees with label), site-mark intensity)
SITES = {
    "north": ("train", 0.9, 0.50),
    "east": ("train", 0.8, 0.65),
    "valley": ("ood_val", 0.3, 0.80),
    "harbour": ("test", 0.75, 0.95),
}
# The training tests' cohort: three training hospitals (so leave-one-hospital-out has two left), the position
# shortcut weakening from north to west and reversed at the held-out sites.
TRAIN_SITES = {
    "north": ("train", 0.9, 0.50),
    "east": ("train", 0.8, 0.65),
    "west": ("train", 0.7, 0.575),
    "valley": ("ood_val", 0.3, 0.80),
    "harbour": ("test", 0.1, 0.95),
}


def lung_template(size: int) -> np.ndarray:
    """Two fixed rectangles: rows 25-75% of the side, columns 15-42% and 58-85%."""
    m = np.zeros((size, size), dtype=bool)
    r0, r1 = int(0.25 * size), int(0.75 * size)
    m[r0:r1, int(0.15 * size):int(0.42 * size)] = True
    m[r0:r1, int(0.58 * size):int(0.85 * size)] = True
    return m


def stamp_template(size: int) -> np.ndarray:
    """The 'SUPINE' stamp region, top left, outside the lungs."""
    m = np.zeros((size, size), dtype=bool)
    m[1:max(2, size // 8), 1:max(2, size // 4)] = True
    return m


def site_mark_template(size: int) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[size - size // 8 - 1:size - 1, size - size // 8 - 1:size - 1] = True
    return m


def render(rng: np.random.Generator, size: int, label: int, supine: bool, site_value: float):
    """(image float32, lungs uint8, shortcuts uint8) for one patient in one position."""
    lungs = lung_template(size)
    image = 0.15 + 0.02 * rng.standard_normal((size, size))
    image[lungs] = 0.35 + 0.02 * rng.standard_normal(lungs.sum())
    if label == 1:  # an opacity patch wholly inside a random lung
        side = max(2, size // 8)
        r0, r1 = int(0.25 * size), int(0.75 * size)
        c0, c1 = (int(0.15 * size), int(0.42 * size)) if rng.random() < 0.5 else (int(0.58 * size), int(0.85 * size))
        r = rng.integers(r0, r1 - side + 1)
        c = rng.integers(c0, c1 - side + 1)
        image[r:r + side, c:c + side] = 0.95
    shortcuts = np.zeros((size, size), dtype=np.uint8)
    if supine:
        image[stamp_template(size)] = 0.95
        shortcuts[stamp_template(size)] = SHORTCUT_CODES["text_stamp"]
    image[site_mark_template(size)] = site_value
    shortcuts[site_mark_template(size)] = SHORTCUT_CODES["site_mark"]
    return np.clip(image, 0, 1).astype(np.float32), lungs.astype(np.uint8), shortcuts


def _is_val(rank: int, val_fraction: float) -> bool:
    """Every (1 / val_fraction)-th image of a label goes to val, deterministically: 0.25 -> ranks 3, 7, 11, ..."""
    return floor((rank + 1) * val_fraction) > floor(rank * val_fraction)


def build_ingest(root: Path, *, size: int = 32, n_per_site: int = 16,
                 sites: Mapping[str, tuple[str, float, float]] = SITES, val_fraction: float = 0.25,
                 unlabelled: Mapping[str, float] | None = None, with_lungs: bool = True,
                 with_counterfactuals: bool = True, inputs_hash: str | None = None, seed: int = 0) -> Path:
    """An ingest dir at ``root``: ``n_per_site`` images (1 x ``size`` x ``size``, float16 in [0, 1]) per site of
    ``sites`` (name -> (split plan, P(position agrees with label), site-mark intensity)), labels alternating 0/1, the
    position (a 'SUPINE' stamp) agreeing with the label at the site's rate and a learnable disease signal (an opacity
    patch inside the lungs, label 1 only). Split plan ``train`` sites are split into train/val (``val_fraction`` of
    each label, deterministically); ``ood_val`` and ``test`` sites are held out whole.

    ``unlabelled``: site -> fraction of its images whose label is unknown (``pd.NA``, as ingest writes it): its first
    ``round(fraction * n_per_site)`` images, both classes alike; the images are unchanged.
    ``with_counterfactuals``: the same patient (same noise, same opacity) in the other position, in the cache's
    counterfactual arrays. ``inputs_hash``: written to cache.json when given (train records it as the ingest hash).
    A stage.json is written last (tests/helpers/stage_record.py), as ingest does."""
    rng = np.random.default_rng(seed)
    rows, images, lungs_all, shortcuts_all, cf_images, cf_lungs, cf_shortcuts = [], [], [], [], [], [], []
    for site, (role, agree, site_value) in sites.items():
        n_unknown = round((unlabelled or {}).get(site, 0.0) * n_per_site)
        for i in range(n_per_site):
            label = i % 2
            rank = i // 2  # within-label index
            aligned = rank < round(agree * n_per_site / 2)
            supine = aligned if label == 1 else not aligned
            state = rng.bit_generator.state
            image, lungs, shortcuts = render(rng, size, label, supine, site_value)
            rng.bit_generator.state = state  # the same patient (same noise, same opacity) in the other position
            cf_image, cf_lung, cf_short = render(rng, size, label, not supine, site_value)
            split = role if role != "train" else ("val" if _is_val(rank, val_fraction) else "train")
            child = site == "north" and label == 0 and rank % 3 == 0
            known = i >= n_unknown
            rows.append({
                "image_id": f"{site}-{i:04d}", "path": f"dicom/{site}/{site}-{i:04d}.dcm",
                "patient_key": f"p-{site}-{i}", "site": site, "modality": "DX", "manufacturer": "Synth",
                "view": "AP" if supine else "PA", "position": "supine" if supine else "erect",
                "age_years": 8.0 if child else 50.0, "age_group": "child" if child else "adult",
                "sex": "F" if i % 3 else "M", "label": label if known else pd.NA,
                "label_name": ("COVID-19" if label else "No Finding") if known else "",
                "domain": site, "split": split,
                "lung_mask": f"dicom/{site}/{site}-{i:04d}_lungs.png" if with_lungs else "",
                "shortcut_mask": f"dicom/{site}/{site}-{i:04d}_shortcuts.png", "lesion_mask": "",
                "source_sha256": f"{len(rows):064x}", "cache_index": len(rows),
                "counterfactual_index": len(rows) if with_counterfactuals else -1,
            })
            images.append(image)
            lungs_all.append(lungs if with_lungs else np.zeros_like(lungs))
            shortcuts_all.append(shortcuts)
            cf_images.append(cf_image)
            cf_lungs.append(cf_lung)
            cf_shortcuts.append(cf_short)
    root = Path(root)
    cache = root / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    arrays = {"images": np.stack(images).astype(np.float16), "lung_masks": np.stack(lungs_all),
              "shortcut_masks": np.stack(shortcuts_all)}
    if with_counterfactuals:
        arrays.update({"counterfactual_images": np.stack(cf_images).astype(np.float16),
                       "counterfactual_lung_masks": np.stack(cf_lungs),
                       "counterfactual_shortcut_masks": np.stack(cf_shortcuts)})
    for name, array in arrays.items():
        np.save(cache / f"{name}.npy", array)
    info = {"n": len(rows), "size": size, "dtype": "float16", "arrays": sorted(arrays)}
    if inputs_hash is not None:
        info["inputs_hash"] = inputs_hash
    write_cache_info(cache, info)
    frame = pd.DataFrame(rows)
    if unlabelled:
        frame["label"] = frame["label"].astype("Int64")  # pd.NA = unknown, as ingest writes it
    write_manifest(frame, root)
    # last, as ingest writes it: an ingest without stage.json did not finish and no stage opens it
    (root / "stage.json").write_text(json.dumps(stage_json("ingest", seed=seed)), encoding="utf-8")
    return root


class SoftThreshold(nn.Module):
    """softplus(k (x - t)) / k: ~0 below t, ~x - t above; smooth so gradients exist everywhere."""

    def __init__(self, t: float = 0.7, k: float = 20.0) -> None:
        super().__init__()
        self.t, self.k = t, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(self.k * (x - self.t)) / self.k


class Gate(nn.Module):
    def __init__(self, template: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("template", torch.from_numpy(template.astype(np.float32))[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.template


class SumPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=(2, 3))


def region_reader(template: np.ndarray, threshold: float = 2.0) -> Classifier:
    """A network that by construction reads only the bright pixels inside ``template``:
    logit(1) - logit(0) = 2 (sum_template softthreshold(x) - threshold)."""
    featurizer = nn.Sequential(OrderedDict(act=SoftThreshold(), gate=Gate(template), pool=SumPool()))
    head = nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        head.bias.copy_(torch.tensor([threshold, -threshold]))
    return Classifier(featurizer, head).eval()


def save_run(run_dir: Path, *, algorithm: str = "erm", seed: int = 0, backbone: str = "resnet10t",
             selected_rules: tuple[str, ...] = ("ood_validation",), history: bool = True) -> Path:
    """A run dir as train writes it (contract 4), with an untrained timm network."""
    run_dir = Path(run_dir)
    torch.manual_seed(seed)
    cfg = ModelConfig(backbone=backbone)
    meta = {"algorithm": algorithm, "hparams": {}, "seed": seed, "step": 40, "selection_rule": "training_domain",
            "selection_score": 0.5, "training_domains": ["north", "east"], "domain_columns": ["site"]}
    save_model(run_dir / "model.pt", build_network(cfg), cfg, meta)
    for i, rule in enumerate(selected_rules):
        torch.manual_seed(seed + 100 + i)
        save_model(run_dir / "selected" / f"{rule}.pt", build_network(cfg), cfg,
                   {**meta, "selection_rule": rule, "step": 20})
    if history:
        lines = [{"step": s, "loss": 0.6} for s in (5, 15)]
        lines += [{"step": s, "val_acc": 0.5 + s / 100, "val_acc_per_domain": {}, "ood_val_acc": 0.4,
                   "test_acc": 0.3 + s / 1000, "test_conflict_acc": 0.1, "predicts_constant": {}}
                  for s in (10, 20, 30, 40)]
        (run_dir / "history.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run_dir


def unlabel_copy(ingest_dir: Path, out: Path, *, site: str, label: int | None = None) -> Path:
    """A copy of an ingest dir whose rows of ``site`` (only those with ``label`` when given) have the label unknown
    (pandas nullable Int64, pd.NA), as ingest writes images without a label."""
    import shutil

    from pipeline.manifest import read_manifest

    shutil.copytree(ingest_dir, out)
    frame = read_manifest(out)
    frame["label"] = frame["label"].astype("Int64")
    rows = frame["site"] == site
    if label is not None:
        rows &= frame["label"] == label
    frame.loc[rows, "label"] = pd.NA
    frame.loc[rows, "label_name"] = "unknown"
    write_manifest(frame, out)
    return out
