"""One value, one spelling: values of a harmonised text field that differ only by case, whitespace or Unicode form.

'Hôpital Sud' and 'hôpital sud' (or InstitutionName 'Site One' / 'site one') are one hospital; left apart they
become two training domains, and a config name would pick one of them. Each such group is merged to one spelling
(a preferred value such as the site_map's short name when exactly one of the spellings is one, else the most
frequent raw spelling, ties going to the spelling met first in manifest order), and every merge is returned for the console and summary.json.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.names import norm_key

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Merged:
    """``spellings``: field -> canonical -> the other spellings merged into it; ``images``: field -> spelling -> the
    number of images whose value was rewritten from it."""

    spellings: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    images: dict[str, dict[str, int]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = []
        for name, groups in self.spellings.items():
            for canonical, variants in groups.items():
                shown = ", ".join(f"{v!r} ({n} image{'' if n == 1 else 's'})"
                                  for v, n in ((v, self.images[name][v]) for v in variants))
                out.append(f"ingest: merged spellings of {name} (differ only in case/whitespace/Unicode form): "
                           f"{shown} -> {canonical!r}")
        return out


def _canonical(spelled: list[tuple[str, int]], preferred: set[str]) -> str:
    """The preferred spelling when exactly one is preferred, else the most frequent; ``spelled`` is in order of first
    appearance, so a tie goes to the spelling met first."""
    chosen = [v for v, _ in spelled if v in preferred]
    if len(chosen) == 1:
        return chosen[0]
    return max(spelled, key=lambda item: item[1])[0]  # max keeps the first of equal counts


def merge_spellings(frame: pd.DataFrame, *, fields: Iterable[str], preferred: dict[str, set[str]]) -> Merged:
    """Rewrite, in place, each text column of ``fields`` present in ``frame`` so that values with the same
    :func:`pipeline.names.norm_key` share one spelling; ``preferred``: field -> spellings to keep when present
    (site: the site_map's values). Non-text columns and missing values are left alone."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    merged = Merged()
    for name in dict.fromkeys(fields):
        if name not in frame.columns or is_numeric_dtype(frame[name]) or is_bool_dtype(frame[name]):
            continue
        values = frame[name].dropna().astype(str)
        counts = values.value_counts()
        groups: dict[str, list[tuple[str, int]]] = {}
        for value in dict.fromkeys(values.tolist()):  # order of first appearance
            n = counts[value]
            groups.setdefault(norm_key(value), []).append((str(value), int(n)))
        rewrite: dict[str, str] = {}
        for spelled in groups.values():
            if len(spelled) < 2:
                continue
            canonical = _canonical(spelled, preferred.get(name, set()))
            variants = sorted(v for v, _ in spelled if v != canonical)
            merged.spellings.setdefault(name, {})[canonical] = variants
            merged.images.setdefault(name, {}).update({v: n for v, n in spelled if v != canonical})
            rewrite.update({v: canonical for v in variants})
        if rewrite:
            frame[name] = frame[name].map(lambda v, r=rewrite: r.get(v, v) if isinstance(v, str) else v)
    return merged
