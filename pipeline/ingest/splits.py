"""Patient-level splits: held-out sites whole, train/val inside the training sites, duplicates never straddling.

The unit of splitting is a connected group of rows that share a patient key or an exact pixel hash (the same image
filed twice, possibly under two patient IDs). A unit that reaches a test or OOD-validation site keeps only its rows
there; its copies in other sites are dropped (reported), so nothing seen in training leaks into evaluation.
Inside the training sites units are stratified by (domain, label) and a seeded ``holdout`` share goes to val;
units whose labels are all unknown form their own stratum (label -1), so unlabelled images are split like the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.ingest.config import SplitConfig

if TYPE_CHECKING:
    import pandas as pd

_ROLE_PRIORITY = {"test": 0, "ood_val": 1, "train": 2}


@dataclass
class SplitResult:
    split: pd.Series  # per row: train|val|ood_val|test, or "" for dropped rows
    dropped: dict[int, str]  # row index -> why it was dropped
    duplicate_group: pd.Series  # per row: pixel hash prefix when the image occurs more than once, else ""


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def site_role(site: str, config: SplitConfig) -> str:
    if site in config.test_sites:
        return "test"
    if site in config.ood_val_sites:
        return "ood_val"
    return "train"


def assign_splits(frame: pd.DataFrame, config: SplitConfig) -> SplitResult:
    """``frame`` needs columns site, domain, label, patient_key, pixel_sha256 (a RangeIndex is not required)."""
    import pandas as pd

    n = len(frame)
    uf = _UnionFind(n)
    for column in ("patient_key", "pixel_sha256"):
        first: dict[str, int] = {}
        for pos, value in enumerate(frame[column].tolist()):
            if value in first:
                uf.union(first[value], pos)
            else:
                first[value] = pos
    roots = np.array([uf.find(i) for i in range(n)], dtype=np.int64)
    roles = np.array([site_role(s, config) for s in frame["site"].astype(str)], dtype=object)
    split = np.array(["" for _ in range(n)], dtype=object)
    dropped: dict[int, str] = {}

    unit_role: dict[int, str] = {}
    for pos in range(n):
        best = unit_role.get(roots[pos])
        if best is None or _ROLE_PRIORITY[roles[pos]] < _ROLE_PRIORITY[best]:
            unit_role[roots[pos]] = roles[pos]
    index = frame.index.tolist()
    for pos in range(n):
        role = unit_role[roots[pos]]
        if roles[pos] != role:
            dropped[index[pos]] = f"same patient or identical pixels as an image in a {role} site"
        elif role != "train":
            split[pos] = role

    # nullable Int64 -> int with -1 for unknown: a unit's stratum is its highest known label, -1 when none is known
    labels = frame["label"].astype("Float64").fillna(-1).to_numpy(dtype=np.float64).astype(np.int64)
    domains = frame["domain"].astype(str).to_numpy()
    # Units are ordered by their smallest pixel hash: independent of file order and of the random patient salt,
    # so the same images give the same split on every fresh ingest (the patient key changes with the salt).
    keys = frame["pixel_sha256"].astype(str).to_numpy()
    members_by_root: dict[int, list[int]] = {}
    for pos in range(n):
        if unit_role[roots[pos]] == "train" and roles[pos] == "train":
            members_by_root.setdefault(int(roots[pos]), []).append(pos)
    strata: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for root, members in members_by_root.items():
        stratum = (str(domains[members[0]]), int(labels[members].max()))
        strata.setdefault(stratum, []).append((str(min(keys[members])), root))

    rng = np.random.default_rng(config.seed)
    val_roots: set[int] = set()
    for stratum in sorted(strata):
        units = sorted(strata[stratum])
        order = rng.permutation(len(units))
        n_val = int(np.floor(config.holdout * len(units) + 0.5))
        val_roots.update(units[i][1] for i in order[:n_val])
    for pos in range(n):
        if unit_role[roots[pos]] == "train" and roles[pos] == "train":
            split[pos] = "val" if roots[pos] in val_roots else "train"

    hashes = frame["pixel_sha256"].astype(str)
    counts = hashes.map(hashes.value_counts())
    duplicate_group = pd.Series(np.where(counts.to_numpy() > 1, hashes.str[:16].to_numpy(), ""), index=frame.index)
    return SplitResult(split=pd.Series(split, index=frame.index), dropped=dropped, duplicate_group=duplicate_group)


def conflicting_duplicates(frame: pd.DataFrame) -> dict[int, str]:
    """Row index -> why it is rejected, for every member of an exact-pixel duplicate group (same ``pixel_sha256``)
    whose known labels disagree: the same image cannot be both normal and abnormal, and training on both copies
    teaches noise. The detail names the other files with their labels. Groups that agree (or whose other labels are
    unknown) are left alone: they are counted as duplicates and kept together by :func:`assign_splits`."""
    import pandas as pd

    out: dict[int, str] = {}
    hashes = frame["pixel_sha256"].astype(str)
    copies = hashes.duplicated(keep=False)  # only groups of two or more: a Python loop over every image is slow
    for _, group in frame[copies].groupby(hashes[copies]):
        known = {int(v) for v in group["label"].dropna().tolist()}
        if len(known) < 2:
            continue
        labels = ["unknown" if pd.isna(v) else str(int(v)) for v in group["label"].tolist()]
        shown = {i: f"{p!r} (label {lab})" for i, p, lab in zip(group.index, group["path"], labels, strict=True)}
        for index in group.index:
            others = ", ".join(text for i, text in shown.items() if i != index)
            out[index] = f"identical pixels, conflicting labels {sorted(known)}: also filed as {others}"
    return out
