"""``summary.json``: what was ingested, what was rejected, and which acquisition factors predict the label.

The confounding table is the first thing a user should read: if a shortcut attribute (position, view, ...) or the
site predicts the label, a classifier can score well without looking at the lungs. The measures (factor-alone
AUROC, Cramer's V with a chi-square p-value, intervals) are defined in :mod:`pipeline.ingest.confounding`.
Rows with an unknown label are counted everywhere but measured nowhere (the measures say their ``n``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.artefacts.ingest_summary import IngestSummary
from pipeline.ingest.confounding import P_VALUE_WARNING, measure_factor

if TYPE_CHECKING:
    import pandas as pd


def _label_text(labels: pd.Series) -> pd.Series:
    """'0' / '1' / 'unknown' per row (the label is nullable Int64)."""
    import pandas as pd

    # not astype(str): under pandas 3 that keeps NA missing, and groupby would drop the unknown rows
    return labels.map(lambda v: "unknown" if pd.isna(v) else str(int(v)))


def p_label_per_site(frame: pd.DataFrame, attribute: str) -> dict[str, dict[str, dict[str, Any]]]:
    """site -> attribute value -> n, n_labelled, p_label (null with a reason when no row is labelled)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (site, value), group in frame.groupby([frame["site"].astype(str), frame[attribute].astype(str)]):
        known = group["label"].dropna().astype(int)
        entry: dict[str, Any] = {"n": int(len(group)), "n_labelled": int(len(known))}
        entry["p_label"] = round(float(known.mean()), 4) if len(known) else None
        if not len(known):
            entry["not_measured"] = {"p_label": "no labelled images"}
        out.setdefault(str(site), {})[str(value)] = entry
    return out


def _scopes(frame: pd.DataFrame, factor: str) -> list[tuple[str, pd.DataFrame]]:
    scopes = [("all", frame)]
    if factor not in ("site", "domain") or (factor == "domain" and not frame["domain"].equals(frame["site"])):
        scopes += [(f"site={site}", group) for site, group in frame.groupby(frame["site"].astype(str))]
    return scopes


def _unknown_share(rows: pd.DataFrame, factor: str, warning_auroc: float) -> dict[str, Any] | None:
    """For a factor with an 'unknown' level beside known ones: the AUROC over the known levels alone (null when one
    known level is left) and where the unknown rows come from (``origin``: collection or site -> images). None when
    the factor has no unknown level or no known one. A warning whose known-level AUROC stays below ``warning_auroc``
    is driven by missingness (which collection lacks the field), not by the acquisition factor itself."""
    from sklearn.metrics import roc_auc_score

    unknown = rows[factor] == "unknown"
    if not unknown.any() or unknown.all():
        return None
    known = rows[~unknown]
    labels = known["label"].astype(int).to_numpy()
    auroc = None
    if known[factor].nunique() > 1 and 0 < labels.sum() < len(labels):
        prevalence = known.groupby(factor)["label"].transform(lambda v: v.astype(int).mean()).to_numpy(np.float64)
        auroc = round(float(roc_auc_score(labels, prevalence)), 4)
    origin = rows.loc[unknown, "origin"].value_counts()
    return {"auroc_known_levels": auroc, "driven_by_unknown": auroc is None or auroc < warning_auroc,
            "unknown_origin": {str(k): int(v) for k, v in origin.items()}}


def confounding(frame: pd.DataFrame, *, shortcut_attributes: list[str], min_group_size: int,
                warning_auroc: float, warning_lift: float, collections: pd.Series | None = None) -> dict[str, Any]:
    """Per factor (each shortcut attribute, age_group, site, domain) and scope (all, each site): the measures of
    :func:`pipeline.ingest.confounding.measure_factor`, with warnings for strong associations and small scopes.
    ``collections``: each row's collection (several sources), named when an 'unknown' level drives a warning;
    None: the site is named."""
    n_labelled = int(frame["label"].notna().sum())
    factor_names = list(dict.fromkeys([*shortcut_attributes, "age_group", "site", "domain"]))
    # only the columns measured, as plain str: slicing the whole manifest per site cost more than the measures
    origin = (collections if collections is not None else frame["site"]).astype(str)
    frame = frame[factor_names].astype(str).assign(label=frame["label"], origin=origin.to_numpy())
    factors = []
    for factor in factor_names:
        for scope, rows in _scopes(frame, factor):  # a site without labelled rows is listed with n = 0
            rows = rows[rows["label"].notna()]
            measured = measure_factor(rows[factor], rows["label"].astype(int).to_numpy(), min_n=min_group_size)
            entry = {"factor": factor, "scope": scope, **measured}
            if _warns(entry, warning_auroc):
                entry["unknown_level"] = _unknown_share(rows, factor, warning_auroc)
            factors.append(entry)
    prevalence = {
        str(domain): {"n": int(len(group)), "n_labelled": int(group["label"].notna().sum()),
                      "prevalence": (round(float(group["label"].dropna().astype(int).mean()), 4)
                                     if group["label"].notna().any() else None)}
        for domain, group in frame.groupby(frame["domain"].astype(str))
    }
    per_attribute = {a: p_label_per_site(frame, a) for a in shortcut_attributes}
    return {
        "n_labelled": n_labelled, "n_unlabelled": int(frame["label"].isna().sum()),
        "shortcut_attributes": list(shortcut_attributes),
        "label_prevalence_per_domain": prevalence,
        "p_label_given_attribute_per_site": per_attribute,
        **({"p_label_given_position_per_site": per_attribute["position"]} if "position" in per_attribute else {}),
        "factors": factors,
        "warning_auroc": warning_auroc, "warning_p_value": P_VALUE_WARNING, "warning_lift": warning_lift,
        "warnings": _warnings(factors, warning_auroc, min_group_size,
                              "collection" if collections is not None else "site"),
    }


def _warns(f: dict[str, Any], warning_auroc: float) -> bool:
    return f["auroc"] is not None and f["auroc"] >= warning_auroc and (f["chi2_p_value"] or 0.0) < P_VALUE_WARNING


def _levels_text(f: dict[str, Any]) -> str:
    """'levels: erect 30 images, 20% positive; unknown 11 images, 91% positive' (labelled images)."""
    parts = [f"{k} {v['n']} images, {v['prevalence'] * 100:.0f}% positive" for k, v in f["levels"].items()
             if v.get("prevalence") is not None]
    return "levels: " + "; ".join(parts)


def _missingness_text(f: dict[str, Any], origin_kind: str) -> str:
    """' - mostly because N images have X unknown (missing in collection a: 11) ...' or '' when known levels alone
    carry the association."""
    info = f.get("unknown_level")
    if not info or not info["driven_by_unknown"]:
        return ""
    n_unknown = f["levels"]["unknown"]["n"]
    where = ", ".join(f"{k}: {n}" for k, n in info["unknown_origin"].items())
    known = ("only one known level is left" if info["auroc_known_levels"] is None
             else f"the known levels alone give AUROC {info['auroc_known_levels']:.2f}")
    return (f" - mostly because {n_unknown} images have {f['factor']} unknown (missing in {origin_kind} {where}); "
            f"{known}, so this is missingness of the field (which {origin_kind} lacks it), not the factor itself")


def _p_text(p: float | None) -> str:
    """'p=0.003' or 'p<0.001': a chi-square test never shows p = 0."""
    if p is None:
        return "p not measured"
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _warnings(factors: list[dict[str, Any]], warning_auroc: float, min_group_size: int,
              origin_kind: str = "site") -> list[str]:
    out = []
    for f in factors:
        if _warns(f, warning_auroc):
            lo, hi = f["auroc_ci95"]
            v = f", Cramer's V {f['cramers_v']:.2f} ({_p_text(f['chi2_p_value'])})" if f["cramers_v"] is not None else ""
            out.append(f"{f['factor']} alone predicts the label with AUROC {f['auroc']:.2f} (95% CI {lo:.2f}-{hi:.2f})"
                       f"{v} ({f['scope']}, n={f['n']}; {_levels_text(f)}){_missingness_text(f, origin_kind)}: "
                       "a model can learn this shortcut instead of the disease.")
    small = sorted({(f["scope"], f["n"]) for f in factors if f["small_n"] and f["scope"] != "all"})
    out += [f"{scope}: only {n} labelled images (< min_group_size {min_group_size}); its confounding measures are "
            "uncertain (see their intervals)." if n else
            f"{scope}: no labelled image; its confounding measures are not measured." for scope, n in small]
    return out


def age_distribution(frame: pd.DataFrame) -> dict[str, Any]:
    out = {}
    for site, group in frame.groupby("site"):
        ages = group["age_years"].astype(float)
        known = ages.dropna()
        stats = {"n": int(len(ages)), "n_unknown": int(ages.isna().sum())}
        if len(known):
            q = np.percentile(known, [0, 25, 50, 75, 100])
            stats.update({"mean": round(float(known.mean()), 2), "min": round(float(q[0]), 2),
                          "q25": round(float(q[1]), 2), "median": round(float(q[2]), 2),
                          "q75": round(float(q[3]), 2), "max": round(float(q[4]), 2)})
        stats["age_group"] = {str(k): int(v) for k, v in group["age_group"].value_counts().sort_index().items()}
        out[str(site)] = stats
    return out


def counts(frame: pd.DataFrame) -> dict[str, Any]:
    """site -> position -> label ('0', '1', 'unknown') -> images."""
    nested: dict[str, dict[str, dict[str, int]]] = {}
    keys = [frame["site"].astype(str), frame["position"].astype(str), _label_text(frame["label"])]
    for (site, position, label), n in frame.groupby(keys).size().items():
        nested.setdefault(str(site), {}).setdefault(str(position), {})[str(label)] = int(n)
    return nested


def build_summary(frame: pd.DataFrame, rejects: pd.DataFrame, *, extra: dict[str, Any], shortcut_attributes: list[str],
                  min_group_size: int, warning_auroc: float, warning_lift: float,
                  collections: pd.Series | None = None,
                  scrub: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> IngestSummary:
    """The summary of the kept ``frame`` (manifest rows) and ``rejects`` (rows of rejects.csv); ``extra``: the
    account of sources, CSV rows, names and privacy (:class:`pipeline.artefacts.ingest_summary.IngestSummary` names
    each key); ``scrub``: applied to every string before the model is built (file names in examples)."""
    content = {
        "n_images": int(len(frame)),
        "n_rejected": int(len(rejects)),
        "n_unlabelled": int(frame["label"].isna().sum()),
        "shortcut_attributes": list(shortcut_attributes),
        "per_split": _value_counts(frame["split"]),
        "per_site": _value_counts(frame["site"]),
        "counts_site_position_label": counts(frame),
        "age_per_site": age_distribution(frame),
        "rejects_by_reason": _value_counts(rejects["reason"]),
        "decode_notes": _decode_notes(frame),
        "duplicates": {
            "groups": int(frame.loc[frame["duplicate_group"] != "", "duplicate_group"].nunique()),
            "images": int((frame["duplicate_group"] != "").sum()),
        },
        "confounding": confounding(frame, shortcut_attributes=shortcut_attributes, min_group_size=min_group_size,
                                   warning_auroc=warning_auroc, warning_lift=warning_lift, collections=collections),
        **extra,
    }
    return IngestSummary.from_dict(scrub(content) if scrub is not None else content, where="summary.json (built)")


def _value_counts(column: pd.Series) -> dict[str, int]:
    """value -> rows, values sorted."""
    return {str(k): int(v) for k, v in column.value_counts().sort_index().items()}


def _decode_notes(frame: pd.DataFrame) -> dict[str, int]:
    """Decoder note (the text before its parenthesis) -> images, notes sorted."""
    notes: dict[str, int] = {}
    for text in frame.get("decode_notes", []):
        for note in filter(None, str(text).split("; ")):
            key = note.split("(")[0].strip()
            notes[key] = notes.get(key, 0) + 1
    return dict(sorted(notes.items()))
