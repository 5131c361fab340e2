"""Report section "Same landscape at every hospital?": the audit's typed ``landscape`` block
(pipeline/audit/landscape/schema.py) as a small-multiples figure, one computed sentence per model and two tables."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.audit.landscape.schema import QUANTITIES, Estimate, LandscapeAudit, ModelLandscape, SiteLandscape
from pipeline.errors import DataError
from pipeline.report import figures
from pipeline.report.tables import Cell, Table, cell, ci_cell, is_number, not_measured, num_cell, rate_cell

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


def read_landscape(audit: dict[str, Any] | None) -> LandscapeAudit | str:
    """The typed block, or the reason there is none; a block that breaks the schema is a DataError."""
    if audit is None:
        return "no audit results were found"
    if "landscape" not in audit:
        return "audit.json has no landscape block (an audit from before the landscape part): re-run the audit " \
               "with landscape.enabled: true"
    try:
        return LandscapeAudit.model_validate(audit["landscape"])
    except ValueError as exc:
        raise DataError(f"report: audit.json's landscape block must match schema version 1, got an invalid block "
                        f"({str(exc).splitlines()[0]}). Re-run `cxr-fishr audit` with this version.") from exc


def _num(value: float | None, digits: int = 3) -> str:
    """Callers check for None first; a missing value still reads "not measured", never a dash."""
    return f"{value:.{digits}g}" if is_number(value) else not_measured()


def estimate_text(e: Estimate) -> str:
    """``0.12 [0.08, 0.17]`` (95% bootstrap interval), or ``not measured (reason)``."""
    if e.value is None:
        return not_measured(e.not_measured)
    interval = f" [{_num(e.low)}, {_num(e.high)}]" if e.low is not None and e.high is not None else ""
    return f"{_num(e.value)}{interval}"


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
    return f"{_num(value)} ± {_num(se, 2)} (SE)" if se is not None else f"{_num(value)} (no SE: one probe)"


def model_sentence(name: str, block: ModelLandscape) -> str:
    if block.not_measured and not block.summaries:
        return f"{name}: not measured ({'; '.join(block.not_measured.values())})."
    v, r = block.summaries["gradient_variance"], block.summaries["risk"]
    t_train, se_train = _role_mean(block.sites, True, "hessian_trace")
    t_new, se_new = _role_mean(block.sites, False, "hessian_trace")
    corr, _ = _role_mean(block.sites, True, "fisher_hessian_correlation")
    trace = (f"the Hessian trace is {_trace_text(t_train, se_train)} on training sites and "
             f"{_trace_text(t_new, se_new)} on new sites" if t_train is not None and t_new is not None
             else "the Hessian trace is not measured on both kinds of site")
    agreement = (f"corr(V_e, diag H_e) averages {_num(corr, 2)} on training sites" if corr is not None
                 else "corr(V_e, diag H_e) is not measured on any training site")
    risk_note = compare(r.within_training, r.to_new)
    return (f"{name}: the head-gradient variances (what Fishr matches) differ by {estimate_text(v.within_training)} "
            f"of their mean norm between training sites and by {estimate_text(v.to_new)} from a training site to a "
            f"new site: {compare(v.within_training, v.to_new)}. Risks differ by {estimate_text(r.within_training)} "
            f"nats between training sites and {estimate_text(r.to_new)} to new sites: {risk_note}. Curvature: "
            f"{trace}; {agreement}.")


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
                  caption="Distances between sites (gradients and Hessians: relative to the mean norm over sites; "
                          "95% bootstrap interval over the sampled images)",
                  numeric=[False, False] + [True] * (2 + len(new_sites)))
    for name, block in models.items():
        for q in QUANTITIES:
            s = block.summaries.get(q)
            if s is None:
                reason = "; ".join(block.not_measured.values()) or "no summary"
                table.add([name, LABELS[q], *[cell(None, reason=reason)] * (2 + len(new_sites))])
                continue
            per = [s.per_new_site.get(x, Estimate(value=None, not_measured="site not measured")) for x in new_sites]
            table.add([name, LABELS[q], *[_ci(e) for e in (s.within_training, s.to_new, *per)]])
    return table


def _ci(e: Estimate) -> Cell:
    interval = (e.low, e.high) if e.low is not None else None
    return ci_cell(e.value, interval, reason=e.not_measured)


def sites_table(models: dict[str, ModelLandscape]) -> Table:
    table = Table(["Model", "Site", "Role", "n", "Risk (nats)", "Accuracy", "||G||", "||V||", "||diag H||",
                   "corr(V, diag H)", "tr(H) ± SE"], caption="Per site: the measured landscape",
                  numeric=[False, False, False] + [True] * 8, collapsed=True)
    for name, block in models.items():
        for s in block.sites:
            why = s.not_measured.get("site")
            trace = (Cell(f"{s.hessian_trace:.3g} ± {_num(s.hessian_trace_se, 2)}", s.hessian_trace)
                     if s.hessian_trace is not None else cell(None, reason=why or s.not_measured.get("hessian_trace")))
            table.add([name, s.site, s.role, s.n, num_cell(s.risk, reason=why), rate_cell(s.accuracy, reason=why),
                       num_cell(s.gradient_mean_norm, reason=why), num_cell(s.gradient_variance_norm, reason=why),
                       num_cell(s.hessian_diagonal_norm, reason=why),
                       num_cell(s.fisher_hessian_correlation, digits=2,
                                reason=why or s.not_measured.get("fisher_hessian_correlation")), trace])
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


def landscape_figure(models: dict[str, ModelLandscape], out: Path) -> dict[str, str] | None:
    measured = {n: b for n, b in models.items() if b.summaries}
    if not measured:
        return None
    panels = [_panel(measured, q) for q in QUANTITIES]
    panels.append(_site_panel(measured, "hessian_trace", "Hessian trace", "tr(H), mean over sites"))
    panels.append(_site_panel(measured, "fisher_hessian_correlation", "Fisher vs Hessian", "corr(V, diag H)"))
    figures.bar_panels(out / FIGURE, panels, width_in=max(12.0, 1.0 * len(measured) * len(panels) + 4), height_in=3.0)
    return {"src": FIGURE, "alt": "loss landscape distances between sites per model",
            "caption": "One panel per quantity, models side by side. First four panels: blue, the mean distance "
                       "between two training sites; orange, from a training site to a new (held-out) site (95% "
                       "bootstrap intervals). Last two: the Hessian trace (Hutchinson, ± 1.96 SE) and the "
                       "Fisher-Hessian correlation, averaged over training sites (blue) and over new sites (orange). "
                       "Equal bars: the model sees the same landscape at new sites."}


def build_landscape(audit: dict[str, Any] | None, out: Path) -> LandscapeSection:
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
