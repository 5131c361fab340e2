"""How strongly each acquisition factor alone predicts the label (summary.json ``confounding``).

For a factor (a shortcut attribute such as position or view, the site, the domain, the age group) over the
labelled rows of a scope (all rows, or one site):

* ``auroc``: scikit-learn's ROC AUC of the score "prevalence of the label among rows with this value" (in-sample,
  so 0.5 = no association, 1.0 = the factor separates the classes). Unlike a majority-label accuracy it sees
  prevalence gaps: two sites at 59% and 92% positive both predict 'positive', so the old lift read 0.00, while
  their AUROC is 0.72. Interval: Hanley & McNeil (1982) analytic 95% CI.
* ``cramers_v``: Bergsma's (2013) bias-corrected Cramer's V, with the chi-square test's ``chi2_p_value`` (scipy, no
  continuity correction) on the value x label table; interval: bias-corrected (BC) 95% bootstrap of the table's
  cells (multinomial, seeded, 500 draws), which contains the estimate.
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


def bias_corrected_v(chi2: np.ndarray | float, n: int, shape: tuple[int, int]) -> np.ndarray:
    """Bergsma (2013) bias-corrected Cramer's V of chi-square value(s) ``chi2`` of an (r, k) table of ``n`` rows:
    phi2 minus its expectation under independence, (r-1)(k-1)/(n-1), floored at 0, over min(r~, k~) - 1 with
    r~ = r - (r-1)^2/(n-1). The plain sqrt(chi2/n) is > 0 on every finite sample without any association (a
    0.02-0.05 'signal' on hundreds of rows), which is what put its percentile interval above its own estimate."""
    r, k = shape
    phi2 = np.maximum(np.asarray(chi2, dtype=np.float64) / n - (r - 1) * (k - 1) / max(n - 1, 1), 0.0)
    denominator = min(r - (r - 1) ** 2 / max(n - 1, 1), k - (k - 1) ** 2 / max(n - 1, 1)) - 1
    if denominator <= 0:  # too few rows for the correction: V is not defined by it
        return np.full_like(phi2, np.nan)
    return np.sqrt(phi2 / denominator)


def bc_interval(boot: np.ndarray, estimate: float) -> list[float]:
    """Bias-corrected (BC, Efron 1987) 95% bootstrap percentile interval: the percentiles shifted by z0, the normal
    quantile of the share of draws below the estimate (ties count half: V has many draws exactly at 0). z0 is
    limited to +-1.9 so that the estimate lies between the two shifted percentiles; the interval is finally widened
    to the estimate should interpolation between tied draws leave it a hair outside."""
    from scipy.stats import norm

    share = (np.sum(boot < estimate) + 0.5 * np.sum(boot == estimate)) / len(boot)
    z0 = float(np.clip(norm.ppf(share), -1.9, 1.9))
    levels = norm.cdf(2 * z0 + norm.ppf([0.025, 0.975])) * 100
    low, high = np.percentile(boot, levels)
    return [round(float(min(low, estimate)), 4), round(float(max(high, estimate)), 4)]


def cramers_v(table: np.ndarray, seed: int = 0) -> tuple[float, float, list[float] | None]:
    """(bias-corrected V (:func:`bias_corrected_v`), chi-square p-value, BC bootstrap 95% interval of it
    (:func:`bc_interval`), which contains V) of an (r, 2) value x label table with r >= 2; V and its interval are
    nan / None when the table has too few rows for the correction."""
    from scipy.stats import chi2_contingency

    n = int(table.sum())
    chi2, p_value = chi2_contingency(table, correction=False)[:2]
    v = float(bias_corrected_v(chi2, n, table.shape))
    if not math.isfinite(v):
        return v, float(p_value), None
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, (table / n).ravel(), size=BOOTSTRAP_DRAWS).reshape(BOOTSTRAP_DRAWS, *table.shape)
    boot = bias_corrected_v(_chi2(draws.astype(np.float64)), n, table.shape)
    return v, float(p_value), bc_interval(boot, v)


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
    if ci is None:
        out["not_measured"] = {"cramers_v": f"too few rows ({n}) for the bias-corrected estimate"}
    return out


def _majority(totals: pd.Series, positives: Any, n: int, n_pos: int) -> dict[str, Any]:
    if n == 0:
        return {"accuracy": None, "chance": None, "lift": None}
    accuracy = sum(max(positives[k], t - positives[k]) for k, t in totals.items()) / n
    chance = max(n_pos, n - n_pos) / n
    return {"accuracy": round(float(accuracy), 4), "chance": round(float(chance), 4),
            "lift": round(float(accuracy - chance), 4)}
