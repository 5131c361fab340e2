"""How strongly each acquisition factor alone predicts the label (summary.json ``confounding``).

For a factor (a shortcut attribute such as position or view, the site, the domain, the age group) over the
labelled rows of a scope (all rows, or one site):

* ``auroc``: scikit-learn's ROC AUC of the score "prevalence of the label among rows with this value" (in-sample,
  so 0.5 = no association, 1.0 = the factor separates the classes). Unlike a majority-label accuracy it sees
  prevalence gaps: two sites at 59% and 92% positive both predict 'positive', so the old lift read 0.00, while
  their AUROC is 0.72. Interval: Hanley & McNeil (1982) analytic 95% CI.
* ``cramers_v`` with the chi-square test's ``chi2_p_value`` (scipy, no continuity correction) on the value x label
  table; interval: 95% percentile bootstrap of the table's cells (multinomial, seeded, 500 draws).
* ``accuracy`` / ``chance`` / ``lift``: the older majority-label measure, kept for reference.

``unknown`` is a value like any other (counted in ``levels``, never dropped). Rows with an unknown label are left
out (``n`` counts labelled rows). A measure that cannot be computed is null with a reason in ``not_measured``;
a scope smaller than ``min_group_size`` is measured anyway and flagged ``small_n`` with a warning.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

BOOTSTRAP_DRAWS = 500
P_VALUE_WARNING = 0.05


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def hanley_mcneil_ci(auroc: float, n_pos: int, n_neg: int) -> list[float]:
    """95% interval of an AUROC from its analytic standard error (Hanley & McNeil 1982), clipped to [0, 1]."""
    q1, q2 = auroc / (2 - auroc), 2 * auroc**2 / (1 + auroc)
    var = (auroc * (1 - auroc) + (n_pos - 1) * (q1 - auroc**2) + (n_neg - 1) * (q2 - auroc**2)) / (n_pos * n_neg)
    half = 1.959964 * math.sqrt(max(var, 0.0))
    return [round(max(0.0, auroc - half), 4), round(min(1.0, auroc + half), 4)]


def _chi2(tables: np.ndarray) -> np.ndarray:
    """Pearson chi-square of each (..., r, 2) table; cells with zero expectation contribute nothing."""
    n = tables.sum(axis=(-2, -1), keepdims=True)
    expected = tables.sum(axis=-1, keepdims=True) * tables.sum(axis=-2, keepdims=True) / np.maximum(n, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(expected > 0, (tables - expected) ** 2 / expected, 0.0)
    return terms.sum(axis=(-2, -1))


def cramers_v(table: np.ndarray, seed: int = 0) -> tuple[float, float, list[float]]:
    """(V, chi-square p-value, bootstrap 95% interval of V) of an (r, 2) value x label table with r >= 2."""
    from scipy.stats import chi2_contingency

    n = int(table.sum())
    chi2, p_value = chi2_contingency(table, correction=False)[:2]
    v = math.sqrt(chi2 / n)  # min(r, 2) - 1 = 1
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, (table / n).ravel(), size=BOOTSTRAP_DRAWS).reshape(BOOTSTRAP_DRAWS, *table.shape)
    boot = np.sqrt(_chi2(draws.astype(np.float64)) / n)
    low, high = np.percentile(boot, [2.5, 97.5])
    return v, float(p_value), [round(float(low), 4), round(float(high), 4)]


def measure_factor(values: pd.Series, labels: np.ndarray, *, min_n: int) -> dict[str, Any]:
    """The measures of one factor over labelled rows: ``values`` (str, N), ``labels`` (int 0/1, N)."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    values = values.astype(str).reset_index(drop=True)
    n, n_pos = len(labels), int(labels.sum())
    by_value = pd.Series(labels, dtype="int64").groupby(values)
    positives, totals = by_value.sum(), by_value.size()
    levels = {str(k): {"n": int(t), "n_pos": int(positives[k]), "prevalence": _round(positives[k] / t)}
              for k, t in totals.items()}
    out: dict[str, Any] = {
        "n": n, "n_pos": n_pos, "n_neg": n - n_pos, "levels": levels, "auroc": None, "auroc_ci95": None,
        "cramers_v": None, "cramers_v_ci95": None, "chi2_p_value": None, "small_n": n < min_n, "not_measured": {},
        **_majority(totals, positives, n, n_pos),
    }
    if n == 0 or n_pos in (0, n):
        why = "no labelled images" if n == 0 else f"one class only (n_pos={n_pos}, n_neg={n - n_pos})"
        out["not_measured"] = {k: why for k in ("auroc", "cramers_v", "chi2_p_value")}
        return out
    prevalence = {k: positives[k] / t for k, t in totals.items()}
    auroc = float(roc_auc_score(labels, values.map(prevalence).to_numpy(dtype=np.float64)))
    out["auroc"], out["auroc_ci95"] = round(auroc, 4), hanley_mcneil_ci(auroc, n_pos, n - n_pos)
    if len(totals) < 2:
        out["not_measured"] = {k: "the factor has one value in this scope" for k in ("cramers_v", "chi2_p_value")}
        return out
    table = np.array([[totals[k] - positives[k], positives[k]] for k in totals.index], dtype=np.float64)
    v, p_value, ci = cramers_v(table)
    out["cramers_v"], out["chi2_p_value"], out["cramers_v_ci95"] = _round(v), _round(p_value, 12), ci
    return out


def _majority(totals: pd.Series, positives: Any, n: int, n_pos: int) -> dict[str, Any]:
    if n == 0:
        return {"accuracy": None, "chance": None, "lift": None}
    accuracy = sum(max(positives[k], t - positives[k]) for k, t in totals.items()) / n
    chance = max(n_pos, n - n_pos) / n
    return {"accuracy": round(float(accuracy), 4), "chance": round(float(chance), 4),
            "lift": round(float(accuracy - chance), 4)}
