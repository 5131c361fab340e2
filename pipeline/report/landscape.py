"""Report section "Same landscape at every hospital?": the audit's typed ``landscape`` block
(pipeline/artefacts/landscape.py) as a small-multiples figure, one computed sentence per model and two tables."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.artefacts.landscape import QUANTITIES, Estimate, LandscapeAudit, ModelLandscape, SiteLandscape
from pipeline.protocol.labels import class_counts_text
from pipeline.report import figures
from pipeline.report.tables import Cell, Table, cell, ci_cell, is_number, not_measured, num_cell, rate_cell

if TYPE_CHECKING:
    from pipeline.artefacts.audit import AuditFile

LABELS = {"risk": "risk |R_a - R_b| (nats)", "gradient_mean": "gradient mean ||G_a - G_b||",
          "gradient_variance": "gradient variance ||V_a - V_b||", "hessian_diagonal": "Hessian diagonal ||H_a - H_b||"}
TITLES = {"risk": "risk gap", "gradient_mean": "gradient mean", "gradient_variance": "gradient variance (Fishr)",
          "hessian_diagonal": "Hessian diagonal"}
SERIES = ("between training sites", "training site to new site")  # the summary table's columns
LEGEND = ("training sites", "new sites")  # one legend for every panel: blue = training sites, orange = new sites
FIGURE = "fig_landscape.png"


@dataclass
class LandscapeSection:
    available: bool
    reason: str = ""
    lines: list[str] = field(default_factory=list)      # one computed sentence per model, then a comparison
    figure: dict[str, str] | None = None
    summary: Table | None = None
    sites: Table | None = None
    matrices: Table | None = None


def read_landscape(audit: AuditFile | None) -> LandscapeAudit | str:
    """The typed block (validated when audit.json was loaded: pipeline/artefacts/audit.py), or the reason there is
    none."""
    if audit is None:
        return "no audit results were found"
    return audit.landscape


def _num(value: float | None, digits: int = 3) -> str:
    """Callers check for None first; a missing value still reads "not measured", never a dash."""
    return f"{value:.{digits}g}" if is_number(value) else not_measured()


def _decimals(spread: float | None) -> int | None:
    """Decimal places that show ``spread`` (an interval's width, an SE) with 2 significant digits; None when the
    spread is 0 or missing (then each number keeps 3 significant digits)."""
    if not is_number(spread) or spread <= 0:
        return None
    return min(12, max(0, 1 - math.floor(math.log10(spread))))


def with_spread(value: float, *others: float, spread: float | None) -> list[str]:
    """``value`` and ``others`` at one precision chosen from ``spread``: rounding is monotone, so an estimate
    inside its interval always prints inside it."""
    places = _decimals(spread)
    return [_num(v) if places is None else f"{v:.{places}f}" for v in (value, *others)]


def estimate_text(e: Estimate, *, ceiling: float | None = None, short: bool = False) -> str:
    """``0.0069 [0.0055, 0.0159]`` (95% bootstrap interval; the estimate and its bounds at one precision, chosen
    from the interval's width), or ``not measured (reason)``; ``ceiling``: the largest value the quantity can take
    (statistics.distance_ceiling), said when the estimate or its interval reaches it."""
    if e.value is None:
        return not_measured(e.not_measured)
    if e.low is None or e.high is None:
        return _num(e.value) + _ceiling_note(e, ceiling, short=short)
    value, low, high = with_spread(e.value, e.low, e.high, spread=e.high - e.low)
    outside = "" if e.low <= e.value <= e.high else " (the estimate lies outside its bootstrap interval)"
    return f"{value} [{low}, {high}]{outside}{_ceiling_note(e, ceiling, short=short)}"


CEILING_SHARE = 0.9  # an estimate (or interval top) within 10% of the ceiling is read as at the ceiling


def _ceiling_note(e: Estimate, ceiling: float | None, *, short: bool = False) -> str:
    """Empty below the ceiling; ``short``: a table cell's form (its caption explains)."""
    top = max(v for v in (e.value, e.high) if v is not None)
    if ceiling is None or top < CEILING_SHARE * ceiling:
        return ""
    what = "at the ceiling" if e.value >= CEILING_SHARE * ceiling else "its interval reaches the ceiling"
    if short:
        return f" ({what} {ceiling:g})"
    return (f" ({what} {ceiling:g}: with {ceiling:g} sites the normalised distance cannot exceed "
            f"{ceiling:g}; one site's vector dominates the mean norm, so it says which site, not how far)")


def _ceiling(block: ModelLandscape, quantity: str) -> float | None:
    """The distance ceiling of a normalised quantity (None for the risk gap, in nats); older audits: the count
    of measured sites."""
    if quantity == "risk":
        return None
    return block.distance_ceiling or float(sum(1 for s in block.sites if s.n > 0)) or None


def compare(within: Estimate, to_new: Estimate) -> str:
    """What the two estimates say together, from their values and intervals."""
    if within.value is None or to_new.value is None:
        return "no comparison (one side is not measured)"
    if None in (within.low, within.high, to_new.low, to_new.high):
        return f"new sites {'farther' if to_new.value > within.value else 'closer'} on the point estimates (no " \
               "interval: bootstrap 0)"
    if to_new.low > within.high:
        return f"new sites sit {to_new.value / within.value:.1f}x farther than the training sites sit from each " \
               "other (intervals apart)" if within.value > 0 else "new sites sit farther (intervals apart)"
    if to_new.high < within.low:
        return "new sites sit closer than the training sites sit from each other (intervals apart)"
    return "the intervals overlap: no difference this sample can resolve"


def _role_mean(sites: list[SiteLandscape], training: bool, key: str) -> tuple[float | None, float | None]:
    """Mean of ``key`` over measured training (or held-out) sites, and for the trace the SE of that mean."""
    chosen = [s for s in sites if (s.role == "training") == training and is_number(getattr(s, key))]
    if not chosen:
        return None, None
    mean = sum(getattr(s, key) for s in chosen) / len(chosen)
    ses = [s.hessian_trace_se for s in chosen] if key == "hessian_trace" else []
    se = math.sqrt(sum(x * x for x in ses)) / len(chosen) if ses and all(is_number(x) for x in ses) else None
    return mean, se


def _trace_text(value: float | None, se: float | None) -> str:
    if se is None:
        return f"{_num(value)} (no SE: one probe)"
    mean, spread = with_spread(value, se, spread=se)
    return f"{mean} ± {spread} (SE)"


def negative_trace_note(sites: list[SiteLandscape]) -> str:
    """Sites whose Hessian trace is negative: not at a minimum there, so a mean over sites mixes curvatures of
    opposite sign (said, never averaged silently); empty when none is."""
    negative = [s for s in sites if is_number(s.hessian_trace) and s.hessian_trace < 0]
    if not negative:
        return ""
    listed = ", ".join(f"{s.site} {_trace_text(s.hessian_trace, s.hessian_trace_se)}" for s in negative)
    return (f"; the trace is negative at {len(negative)} of {sum(is_number(s.hessian_trace) for s in sites)} sites "
            f"({listed}): the model is not at a minimum there (the loss curves downward along some directions), "
            "so these means mix curvatures of opposite sign")


def correlation_text(sites: list[SiteLandscape]) -> str:
    """corr(V_e, diag H_e) on training sites worded from its comparison with the shuffled-label baseline: for a
    linear head both scale with the squared feature magnitudes, so a high value alone supports nothing."""
    chosen = [s for s in sites if s.role == "training" and is_number(s.fisher_hessian_correlation)]
    if not chosen:
        return "corr(V_e, diag H_e) is not measured on any training site"
    observed = sum(s.fisher_hessian_correlation for s in chosen) / len(chosen)
    based = [s for s in chosen if s.shuffled_label_correlation is not None
             and s.shuffled_label_correlation.value is not None]
    if not based:
        return (f"corr(V_e, diag H_e) averages {_num(observed, 2)} on training sites, but this audit has no "
                "shuffled-label baseline (re-run it): for a linear head both scale with the squared feature "
                "magnitudes, so the correlation is near 1 for any weights and is not read as support for Fishr")
    baseline = sum(s.shuffled_label_correlation.value for s in based) / len(based)
    above = [s for s in based if _above_baseline(s)]
    per_site = "; ".join(f"{s.site} {_observed_text(s)} vs {estimate_text(s.shuffled_label_correlation)}"
                         for s in based)
    verdict = ("above the baseline at every training site: the Fisher-Hessian agreement goes beyond what the "
               "feature magnitudes give" if len(above) == len(based) else
               "not above the baseline at any training site: the high correlation is what the feature magnitudes "
               "give a linear head, so it does not support Fishr's argument" if not above else
               f"above the baseline at {len(above)} of {len(based)} training sites only: weak support at best")
    observed_text, baseline_text = with_spread(observed, baseline, spread=abs(observed - baseline))
    return (f"corr(V_e, diag H_e) averages {observed_text} on training sites against {baseline_text} with "
            f"the labels shuffled within the site (the baseline: both scale with the squared feature magnitudes; "
            f"{per_site}): {verdict}")


def _observed_text(site: SiteLandscape) -> str:
    return estimate_text(Estimate(value=site.fisher_hessian_correlation, low=site.fisher_hessian_correlation_low,
                                  high=site.fisher_hessian_correlation_high))


def _above_baseline(site: SiteLandscape) -> bool:
    """Observed above the shuffled-label baseline: intervals apart, or (without intervals) above its top/value."""
    base = site.shuffled_label_correlation
    top = base.high if base.high is not None else base.value
    low = site.fisher_hessian_correlation_low
    return (low if low is not None else site.fisher_hessian_correlation) > top


def model_sentence(name: str, block: ModelLandscape) -> str:
    if block.not_measured and not block.summaries:
        return f"{name}: not measured ({'; '.join(block.not_measured.values())})."
    v, r = block.summaries["gradient_variance"], block.summaries["risk"]
    ceiling = _ceiling(block, "gradient_variance")
    t_train, se_train = _role_mean(block.sites, True, "hessian_trace")
    t_new, se_new = _role_mean(block.sites, False, "hessian_trace")
    trace = (f"the Hessian trace is {_trace_text(t_train, se_train)} on training sites and "
             f"{_trace_text(t_new, se_new)} on new sites" if t_train is not None and t_new is not None
             else "the Hessian trace is not measured on both kinds of site") + negative_trace_note(block.sites)
    risk_note = compare(r.within_training, r.to_new)
    return (f"{name}: the head-gradient variances (what Fishr matches) differ by "
            f"{estimate_text(v.within_training, ceiling=ceiling)} of their mean norm between training sites and by "
            f"{estimate_text(v.to_new, ceiling=ceiling)} from a training site to a new site: "
            f"{compare(v.within_training, v.to_new)}. Risks differ by {estimate_text(r.within_training)} "
            f"nats between training sites and {estimate_text(r.to_new)} to new sites: {risk_note}. Curvature: "
            f"{trace}; {correlation_text(block.sites)}.")


def comparison_line(models: dict[str, ModelLandscape]) -> str | None:
    """Which model's training sites agree most on gradient variances, and whether the intervals separate it."""
    ranked = [(b.summaries["gradient_variance"].within_training, n) for n, b in models.items()
              if "gradient_variance" in b.summaries]
    ranked = sorted([p for p in ranked if p[0].value is not None], key=lambda pair: pair[0].value)
    if len(ranked) < 2:
        return None
    (best, name), (runner, other) = ranked[0], ranked[1]
    apart = best.high is not None and runner.low is not None and best.high < runner.low
    return (f"Closest gradient variances between training sites: {name} ({estimate_text(best)}), then {other} "
            f"({estimate_text(runner)}); " + ("the intervals are apart." if apart else
                                               "the intervals overlap, so this sample cannot rank them."))


def summary_table(models: dict[str, ModelLandscape]) -> Table:
    new_sites = sorted({s for b in models.values() for q in b.summaries.values() for s in q.per_new_site})
    table = Table(["Model", "Quantity", *SERIES, *[f"to {s}" for s in new_sites]],
                  caption="Distances between sites (gradients and Hessians: relative to the mean norm over sites, "
                          "which caps them at the number of measured sites: a value at that ceiling says one site's "
                          "vector dominates the mean norm, not how far apart the sites are; 95% bootstrap interval "
                          "over the sampled images)",
                  numeric=[False, False] + [True] * (2 + len(new_sites)))
    for name, block in models.items():
        for q in QUANTITIES:
            s = block.summaries.get(q)
            if s is None:
                reason = "; ".join(block.not_measured.values()) or "no summary"
                table.add([name, LABELS[q], *[cell(None, reason=reason)] * (2 + len(new_sites))])
                continue
            per = [s.per_new_site.get(x, Estimate(value=None, not_measured="site not measured")) for x in new_sites]
            table.add([name, LABELS[q], *[_ci(e, _ceiling(block, q)) for e in (s.within_training, s.to_new, *per)]])
    return table


def _ci(e: Estimate, ceiling: float | None = None) -> Cell:
    """The estimate as the sentences write it (one precision from the interval; the ceiling said)."""
    if e.value is None:
        return ci_cell(None, None, reason=e.not_measured)
    return Cell(estimate_text(e, ceiling=ceiling, short=True), e.value, "muted" if _ceiling_note(e, ceiling) else "")


def _sample_cell(s: SiteLandscape) -> Cell:
    """``8 of 9 (4 COVID-19 / 4 no finding)``: the measured sample, the labelled pool it was drawn from, its classes."""
    text = f"{s.n} of {s.n_labelled}" if s.n != s.n_labelled else f"{s.n}"
    if s.n_pos is not None and s.n_neg is not None:
        text += f" ({class_counts_text(s.n_pos, s.n_neg)})"
    return Cell(text, float(s.n))


def _accuracy_cells(s: SiteLandscape, why: str | None) -> list[Cell]:
    """Threshold, accuracy (flagged like every other accuracy of the report) and the always-majority accuracy."""
    from pipeline.report.site_metrics import accuracy_cell

    if s.accuracy is not None and s.threshold is None:  # an audit.json from before thresholded landscapes
        why = "older audit.json: the accuracy was taken at the arg-max, not the checkpoint's threshold; re-run audit"
    if why is not None:
        return [cell(None, reason=why)] * 3
    block = {**s.model_dump(), "not_measured": {"accuracy": s.not_measured.get("site")}}
    return [num_cell(s.threshold, digits=2, css="muted"), accuracy_cell(block),
            rate_cell(s.majority_accuracy, css="muted", reason="no class counts")]


def sites_table(models: dict[str, ModelLandscape]) -> Table:
    table = Table(["Model", "Site", "Role", "n of labelled (classes)", "Risk (nats)", "threshold", "accuracy",
                   "always-majority", "||G||", "||V||", "||diag H||", "corr(V, diag H)", "corr, labels shuffled",
                   "tr(H) ± SE"],
                  caption="Per site: the measured landscape on n labelled images sampled (balanced over labels, at "
                          "most landscape.images_per_site) from the site's labelled images; accuracy at the "
                          "checkpoint's threshold, as evaluate scores it (corr, labels shuffled: the baseline the "
                          "correlation must exceed; a negative tr(H): not at a minimum)",
                  numeric=[False, False, False] + [True] * 11, collapsed=True)
    for name, block in models.items():
        for s in block.sites:
            why = s.not_measured.get("site")
            trace = (Cell(_trace_text(s.hessian_trace, s.hessian_trace_se), s.hessian_trace,
                          "worst" if s.hessian_trace < 0 else "")
                     if s.hessian_trace is not None else cell(None, reason=why or s.not_measured.get("hessian_trace")))
            table.add([name, s.site, s.role, _sample_cell(s), num_cell(s.risk, reason=why), *_accuracy_cells(s, why),
                       num_cell(s.gradient_mean_norm, reason=why), num_cell(s.gradient_variance_norm, reason=why),
                       num_cell(s.hessian_diagonal_norm, reason=why),
                       _ci(Estimate(value=s.fisher_hessian_correlation, low=s.fisher_hessian_correlation_low,
                                    high=s.fisher_hessian_correlation_high,
                                    not_measured=why or s.not_measured.get("fisher_hessian_correlation"))),
                       _ci(s.shuffled_label_correlation or Estimate(
                           value=None, not_measured=why or "no shuffled-label baseline in this audit")), trace])
    return table


def matrices_table(models: dict[str, ModelLandscape]) -> Table:
    """Every pairwise distance: one row per model x quantity x site, one column per site (collapsed)."""
    sites = sorted({x for b in models.values() for m in b.distances.values() for x in m.sites})
    table = Table(["Model", "Quantity", "Site", *sites], caption="Distance matrices (site x site)",
                  numeric=[False, False, False] + [True] * len(sites), collapsed=True)
    for name, block in models.items():
        for q, matrix in block.distances.items():
            for a, row in zip(matrix.sites, matrix.values, strict=True):
                values = dict(zip(matrix.sites, row, strict=True))
                table.add([name, LABELS[q], a, *[num_cell(values.get(b), reason="site not measured")
                                                 for b in sites]])
    return table


def _panel(models: dict[str, ModelLandscape], quantity: str) -> dict[str, Any]:
    names = list(models)
    series, intervals = {}, {}
    for k, label in enumerate(LEGEND):
        summaries = [b.summaries[quantity] for b in models.values()]
        ests = [q.within_training if k == 0 else q.to_new for q in summaries]
        series[label] = [e.value for e in ests]
        intervals[label] = [(e.low, e.high) if e.low is not None else None for e in ests]
    return {"groups": names, "series": series, "intervals": intervals, "ylim": None, "title": TITLES[quantity],
            "ylabel": "nats" if quantity == "risk" else "relative to mean norm"}


def _site_panel(models: dict[str, ModelLandscape], key: str, title: str, ylabel: str) -> dict[str, Any]:
    series: dict[str, list] = {label: [] for label in LEGEND}
    intervals: dict[str, list] = {label: [] for label in LEGEND}
    for block in models.values():
        for label, training in zip(LEGEND, (True, False), strict=True):
            mean, se = _role_mean(block.sites, training, key)
            series[label].append(mean)
            intervals[label].append((mean - 1.96 * se, mean + 1.96 * se) if mean is not None and se else None)
    return {"groups": list(models), "series": series, "intervals": intervals, "ylim": None, "title": title,
            "ylabel": ylabel}


def _excess_panel(models: dict[str, ModelLandscape]) -> dict[str, Any]:
    """corr(V, diag H) minus its shuffled-label baseline, averaged over training (new) sites: 0 means the
    agreement is what the feature magnitudes give a linear head; an older audit without the baseline: no bar."""
    series: dict[str, list] = {label: [] for label in LEGEND}
    for block in models.values():
        for label, training in zip(LEGEND, (True, False), strict=True):
            gaps = [s.fisher_hessian_correlation - s.shuffled_label_correlation.value for s in block.sites
                    if (s.role == "training") == training and is_number(s.fisher_hessian_correlation)
                    and s.shuffled_label_correlation is not None and is_number(s.shuffled_label_correlation.value)]
            series[label].append(sum(gaps) / len(gaps) if gaps else None)
    return {"groups": list(models), "series": series, "intervals": {label: [None] * len(models) for label in LEGEND},
            "ylim": None, "title": "Fisher vs Hessian, beyond shuffled labels", "ylabel": "corr - shuffled corr"}


def landscape_figure(models: dict[str, ModelLandscape], out: Path) -> dict[str, str] | None:
    measured = {n: b for n, b in models.items() if b.summaries}
    if not measured:
        return None
    panels = [_panel(measured, q) for q in QUANTITIES]
    panels.append(_site_panel(measured, "hessian_trace", "Hessian trace", "tr(H), mean over sites"))
    panels.append(_excess_panel(measured))
    figures.bar_panels(out / FIGURE, panels, width_in=max(12.0, 1.0 * len(measured) * len(panels) + 4), height_in=3.0)
    return {"src": FIGURE, "alt": "loss landscape distances between sites per model",
            "caption": "One panel per quantity, models side by side. First four panels: blue, the mean distance "
                       "between two training sites; orange, from a training site to a new (held-out) site (95% "
                       "bootstrap intervals; gradients and Hessians are capped at the number of sites). Last two: the "
                       "Hessian trace (Hutchinson, ± 1.96 SE; a negative site trace, not at a minimum, is named in the "
                       "text) and the Fisher-Hessian correlation minus the same correlation with labels shuffled "
                       "within the site (0: no agreement beyond what the feature magnitudes give a linear head), "
                       "averaged over training sites (blue) and over new sites (orange). "
                       "Equal bars: the model sees the same landscape at new sites."}


def build_landscape(audit: AuditFile | None, out: Path) -> LandscapeSection:
    parsed = read_landscape(audit)
    if isinstance(parsed, str):
        return LandscapeSection(available=False, reason=f"Not measured: {parsed}.")
    if not parsed.measured:
        return LandscapeSection(available=False, reason=f"Not measured: {parsed.reason}.")
    models = parsed.models
    lines = [model_sentence(n, b) for n, b in models.items()]
    line = comparison_line(models)
    lines += [line] if line else []
    return LandscapeSection(available=True, lines=lines, figure=landscape_figure(models, out),
                            summary=summary_table(models), sites=sites_table(models),
                            matrices=matrices_table(models))
