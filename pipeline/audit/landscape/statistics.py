"""Per-site moments of the loss landscape and the distances between sites (pure numpy, no network).

For site e with per-sample losses l_i, head gradients g_i (P,) and head Hessian diagonals h_i (P,):
R_e = mean l_i, G_e = mean g_i, V_e = mean (g_i - G_e)^2 (centred, biased: Fishr's v_e), H_e = mean h_i.
Distances: |R_a - R_b| (nats), and ||X_a - X_b|| / mean_e ||X_e|| for X in G, V, H (the mean over the model's
measured sites: a scale-free number, comparable between models).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.artefacts.landscape import QUANTITIES, Estimate

VECTOR_QUANTITIES = {"gradient_mean": "G", "gradient_variance": "V", "hessian_diagonal": "H"}


@dataclass(frozen=True)
class SiteSample:
    """Per-sample measurements of one site: loss (n,), correct (n,) bool, grads (n, P), hessian (n, P)."""

    site: str
    role: str
    loss: np.ndarray
    correct: np.ndarray
    grads: np.ndarray
    hessian: np.ndarray


@dataclass(frozen=True)
class Moments:
    R: float
    G: np.ndarray
    V: np.ndarray
    H: np.ndarray


def moments(sample: SiteSample, rows: np.ndarray | None = None) -> Moments:
    """R, G, V, H of ``sample`` (or of its rows ``rows``, e.g. a bootstrap resample)."""
    g = sample.grads if rows is None else sample.grads[rows]
    loss = sample.loss if rows is None else sample.loss[rows]
    h = sample.hessian if rows is None else sample.hessian[rows]
    mean = g.mean(axis=0)
    return Moments(R=float(loss.mean()), G=mean, V=((g - mean) ** 2).mean(axis=0), H=h.mean(axis=0))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two vectors; NaN when either is constant."""
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def distance_ceiling(n_sites: int) -> float:
    """The largest value ||X_a - X_b|| / mean_e ||X_e|| can take over ``n_sites`` sites: ||X_a - X_b|| <=
    ||X_a|| + ||X_b|| <= sum_e ||X_e|| = n_sites * mean norm (reached when one site's vector dominates)."""
    return float(n_sites)


def bootstrap_correlation(sample: SiteSample, *, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot,) corr(V_e, diag H_e) over resamples of the site's images (NaN where a resample is constant)."""
    rng = np.random.default_rng(seed)
    draws = [moments(sample, rng.integers(0, len(sample.loss), len(sample.loss))) for _ in range(n_boot)]
    return np.asarray([correlation(m.V, m.H) for m in draws], dtype=float)


def interval(draws: np.ndarray) -> tuple[float | None, float | None]:
    """The 2.5-97.5 percentile interval of the finite ``draws`` ((None, None) with fewer than two)."""
    finite = draws[np.isfinite(draws)]
    if finite.size < 2:
        return None, None
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def distance_matrices(site_moments: list[Moments]) -> dict[str, np.ndarray]:
    """(S, S) per quantity of QUANTITIES; a vector quantity whose mean norm is 0 gives NaN (nothing to scale by)."""
    out = {"risk": np.abs(np.subtract.outer([m.R for m in site_moments], [m.R for m in site_moments]))}
    for name, attr in VECTOR_QUANTITIES.items():
        vectors = np.stack([getattr(m, attr) for m in site_moments])
        scale = float(np.linalg.norm(vectors, axis=1).mean())
        diff = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=2)
        out[name] = diff / scale if scale > 0 else np.full_like(diff, np.nan)
    return out


def summarise(matrix: np.ndarray, training: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(mean over training-site pairs, mean over training x held-out pairs, per held-out site (H,) its mean
    distance to the training sites); NaN where there are no such pairs. ``training`` bool (S,)."""
    tr, new = np.flatnonzero(training), np.flatnonzero(~training)
    pairs = [matrix[i, j] for a, i in enumerate(tr) for j in tr[a + 1:]]
    within = float(np.mean(pairs)) if pairs else float("nan")
    cross = matrix[np.ix_(tr, new)]
    to_new = float(cross.mean()) if cross.size else float("nan")
    per_new = cross.mean(axis=0) if tr.size else np.full(new.size, np.nan)
    return within, to_new, per_new


def all_summaries(site_moments: list[Moments], training: np.ndarray) -> np.ndarray:
    """(Q, 2 + H): per quantity [within, to_new, per held-out site...]."""
    mats = distance_matrices(site_moments)
    rows = []
    for q in QUANTITIES:
        within, to_new, per_new = summarise(mats[q], training)
        rows.append(np.concatenate([[within, to_new], per_new]))
    return np.asarray(rows, dtype=float)


def bootstrap_summaries(samples: list[SiteSample], training: np.ndarray, *, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, Q, 2 + H): all_summaries over resamples (each site's images drawn with replacement)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        resampled = [moments(s, rng.integers(0, len(s.loss), len(s.loss))) for s in samples]
        out.append(all_summaries(resampled, training))
    return np.asarray(out, dtype=float).reshape(n_boot, len(QUANTITIES), -1)


def estimate(value: float, draws: np.ndarray, reason: str) -> Estimate:
    """An Estimate with the 2.5-97.5 percentile interval of the finite ``draws``; None + ``reason`` if ``value``
    is not finite."""
    if not np.isfinite(value):
        return Estimate(value=None, not_measured=reason)
    low, high = interval(draws)
    return Estimate(value=float(value), low=low, high=high)
