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

    roots = _units(frame)
    roles = np.array([site_role(s, config) for s in frame["site"].astype(str)], dtype=object)
    unit_role = _unit_roles(roots, roles)
    split = np.array(["" for _ in range(len(frame))], dtype=object)
    dropped = _held_out(split, frame.index.tolist(), roots, roles, unit_role)
    training = [pos for pos in range(len(frame)) if unit_role[roots[pos]] == "train" and roles[pos] == "train"]
    val_roots = _val_units(_training_strata(frame, roots, training), config)
    for pos in training:
        split[pos] = "val" if roots[pos] in val_roots else "train"
    return SplitResult(split=pd.Series(split, index=frame.index), dropped=dropped,
                       duplicate_group=_duplicate_groups(frame))


def _units(frame: pd.DataFrame) -> np.ndarray:
    """Each row's unit (the smallest row position in it): rows sharing a patient key or a pixel hash, transitively."""
    n = len(frame)
    uf = _UnionFind(n)
    for column in ("patient_key", "pixel_sha256"):
        first: dict[str, int] = {}
        for pos, value in enumerate(frame[column].tolist()):
            if value in first:
                uf.union(first[value], pos)
            else:
                first[value] = pos
    return np.array([uf.find(i) for i in range(n)], dtype=np.int64)


def _unit_roles(roots: np.ndarray, roles: np.ndarray) -> dict[int, str]:
    """Unit -> the strongest role of its rows' sites (test, then ood_val, then train)."""
    unit_role: dict[int, str] = {}
    for root, role in zip(roots, roles, strict=True):
        best = unit_role.get(root)
        if best is None or _ROLE_PRIORITY[role] < _ROLE_PRIORITY[best]:
            unit_role[root] = role
    return unit_role


def _held_out(split: np.ndarray, index: list, roots: np.ndarray, roles: np.ndarray,
              unit_role: dict[int, str]) -> dict[int, str]:
    """Rows of held-out units get their site's split (in place); a unit's rows in sites of another role are dropped:
    returns row index -> why."""
    dropped: dict[int, str] = {}
    for pos, (root, role) in enumerate(zip(roots, roles, strict=True)):
        unit = unit_role[root]
        if role != unit:
            dropped[index[pos]] = f"same patient or identical pixels as an image in a {unit} site"
        elif unit != "train":
            split[pos] = unit
    return dropped


def _training_strata(frame: pd.DataFrame, roots: np.ndarray,
                     training: list[int]) -> dict[tuple[str, int], list[tuple[str, int]]]:
    """(domain, the unit's highest known label or -1) -> its training units as (smallest pixel hash, unit)."""
    # nullable Int64 -> int with -1 for unknown: a unit's stratum is its highest known label, -1 when none is known
    labels = frame["label"].astype("Float64").fillna(-1).to_numpy(dtype=np.float64).astype(np.int64)
    domains = frame["domain"].astype(str).to_numpy()
    # Units are ordered by their smallest pixel hash: independent of file order and of the random patient salt,
    # so the same images give the same split on every fresh ingest (the patient key changes with the salt).
    keys = frame["pixel_sha256"].astype(str).to_numpy()
    members_by_root: dict[int, list[int]] = {}
    for pos in training:
        members_by_root.setdefault(int(roots[pos]), []).append(pos)
    strata: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for root, members in members_by_root.items():
        stratum = (str(domains[members[0]]), int(labels[members].max()))
        strata.setdefault(stratum, []).append((str(min(keys[members])), root))
    return strata


def _val_units(strata: dict[tuple[str, int], list[tuple[str, int]]], config: SplitConfig) -> set[int]:
    """A seeded ``holdout`` share (rounded half up) of each stratum's units, strata in sorted order."""
    rng = np.random.default_rng(config.seed)
    val_roots: set[int] = set()
    for stratum in sorted(strata):
        units = sorted(strata[stratum])
        order = rng.permutation(len(units))
        n_val = int(np.floor(config.holdout * len(units) + 0.5))
        val_roots.update(units[i][1] for i in order[:n_val])
    return val_roots


def _duplicate_groups(frame: pd.DataFrame) -> pd.Series:
    """Per row: the pixel hash's first 16 characters when the image occurs more than once, else ''."""
    import pandas as pd

    hashes = frame["pixel_sha256"].astype(str)
    counts = hashes.map(hashes.value_counts())
    return pd.Series(np.where(counts.to_numpy() > 1, hashes.str[:16].to_numpy(), ""), index=frame.index)


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
