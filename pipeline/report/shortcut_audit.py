"""Section 4: the shortcut audit from the typed ``audit.json`` (pipeline/artefacts/audit.py): localisation, region
ablation, saliency gallery (the same images for every model, side by side), interventions, probes and the sanity
check; evaluate's accuracies of the same checkpoints come from the typed ``metrics.json``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.protocol.labels import LABEL_NAMES
from pipeline.regions import SHORTCUT_KINDS
from pipeline.report import figures
from pipeline.report.baselines import threshold_text
from pipeline.report.tables import Cell, Table, cell, is_number, mark_estimated, num_cell, rate_cell, reason_of

if TYPE_CHECKING:
    from pipeline.artefacts.audit import AuditFile, AuditModel, Interventions, Localisation, Overlay, RegionShares
    from pipeline.artefacts.metrics import GroupScores, MetricsFile

METHOD_LABELS = {"integrated_gradients": "Integrated Gradients", "saliency": "Saliency", "grad_cam": "Grad-CAM",
                 "occlusion": "Occlusion"}
MAX_GALLERY_IMAGES = 12


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def shortcut_share(shares: RegionShares | None) -> float | None:
    """Sum of the region-ablation shares of every shortcut kind (None when none was measured or ``shares`` is None)."""
    if shares is None:
        return None
    values = [getattr(shares, kind) for kind in SHORTCUT_KINDS.values() if is_number(getattr(shares, kind))]
    return float(sum(values)) if values else None


NO_SHORTCUT_MASK = "no shortcut mask in the cache"


def _measured_cell(block: Localisation | RegionShares, key: str, shortcut_masks: bool = True) -> Cell:
    """A share (a ratio for ``*_ratio``) or "not measured (reason)"; a shortcut number without shortcut masks is
    not a measurement, whatever value the stage wrote."""
    if "shortcut" in key and not shortcut_masks:
        return cell(None, reason=NO_SHORTCUT_MASK)
    value, reason = getattr(block, key), reason_of(block, key)
    if key.endswith("ratio"):
        return num_cell(value, digits=2, reason=reason)
    return rate_cell(value, reason=reason)


LUNG_KEYS = ("lung_mass_fraction", "lung_focus_ratio", "pointing_game", "lungs", "lung_only_accuracy",
             "lungs_removed_accuracy", "rest")


def localisation_table(models: dict[str, AuditModel], *, detail: bool = False,
                       shortcut_masks: bool = True, split: str = "test", estimated: bool = False) -> Table:
    """Overall per model and method; with ``detail``, per site and per position as well (a collapsed table)."""
    caption = "By site and position" if detail else f"Where the positive attribution falls ({split} split)"
    table = Table(["model", "method", "scope", "n valid", "lung mass", "shortcut mass", "lung focus ratio",
                   "pointing game", "rule"], caption=caption, collapsed=detail,
                  numeric=[False, False, False, True, True, True, True, True, False])
    for name, entry in models.items():
        rule = entry.selection_rule
        for method, result in entry.methods.items():
            scopes = [] if detail else [("overall", result.overall)]
            for prefix, blocks in (("site", result.per_site), ("position", result.per_position)) if detail else ():
                scopes += [(f"{prefix} {k}", v) for k, v in blocks.items()]
            for scope, block in scopes:
                table.add([name, method_label(method), scope, cell(block.n_valid),
                           *[mark_estimated(_measured_cell(block, key, shortcut_masks), estimated and key in LUNG_KEYS)
                             for key in ("lung_mass_fraction", "shortcut_mass_fraction", "lung_focus_ratio",
                                         "pointing_game")],
                           Cell(rule, rule, "muted")])
    table.note = ("Lung/shortcut mass: share of positive attribution inside the lungs / the shortcut regions. Lung "
                  "focus ratio: lung mass over lung area (1 = chance). Pointing game: share of images whose "
                  "attribution peak lies in the lungs.")
    return table


def _overall_of(entry: AuditModel, method: str, key: str) -> float | None:
    """A method's overall localisation number for one model (None: the method was not run for it)."""
    result = entry.methods.get(method)
    return getattr(result.overall, key) if result is not None else None


def _method_figure(models: dict[str, AuditModel], out: Path) -> dict[str, Any] | None:
    methods = list(dict.fromkeys(m for e in models.values() for m in e.methods))
    if not methods:
        return None
    values = [_overall_of(e, m, k) for e in models.values() for m in methods
              for k in ("lung_mass_fraction", "shortcut_mass_fraction")]
    if not any(is_number(v) for v in values):  # an empty 0-1 chart would suggest a measurement
        return None
    short = [method_label(m).replace("Integrated Gradients", "Int. Grad.") for m in methods]
    panels = []
    for key, title in (("lung_mass_fraction", "inside the lungs"), ("shortcut_mass_fraction", "inside shortcut regions")):
        series = {name: [_overall_of(entry, m, key) for m in methods] for name, entry in models.items()}
        panels.append({"groups": short, "series": series, "ylabel": "share of positive attribution", "title": title})
    figures.bar_panels(out / "fig_localisation.png", panels, width_in=max(9.0, 2.2 * len(methods) + 2))
    return {"src": "fig_localisation.png", "alt": "attribution mass in lungs and shortcut regions per method",
            "caption": "Share of positive attribution inside the lungs (left) and inside shortcut regions (right), "
                       "per attribution method and model."}


def ablation_shares(entry: AuditModel) -> tuple[RegionShares | None, str]:
    """(overall shares, which kind): the absolute shares where audit wrote them (signed shares cancel between
    images where a region is evidence for and against), else the signed ones; None when audit wrote neither."""
    if entry.region_ablation_abs_share is not None:
        return entry.region_ablation_abs_share.overall, "absolute"
    signed = entry.region_ablation_share
    return (signed.overall if signed is not None else None), "signed"


def ablation_table(models: dict[str, AuditModel], *, shortcut_masks: bool = True,
                   estimated: bool = False) -> Table:
    regions = ["lungs", *SHORTCUT_KINDS.values(), "rest"]
    table = Table(["model", "n", "shares", *[r.replace("_", " ") for r in regions], "all shortcuts"],
                  caption="Region ablation: share of the predicted class's logit drop per region",
                  numeric=[False, True, False] + [True] * (len(regions) + 1))
    for name, entry in models.items():
        shares, kind = ablation_shares(entry)
        if shares is None:
            continue
        total = shortcut_share(shares) if shortcut_masks else None
        table.add([name, cell(shares.n), Cell(kind, kind, "muted"),
                   *[mark_estimated(_measured_cell(shares, r), estimated and r in LUNG_KEYS)
                     if shortcut_masks or r in ("lungs", "rest") else cell(None, reason=NO_SHORTCUT_MASK)
                     for r in regions],
                   rate_cell(total, reason=None if shortcut_masks else NO_SHORTCUT_MASK)])
    table.note = ("Behavioural: each region is replaced by the image's mean outside-lung value and the drop of the "
                  "predicted class's logit is shared out over the regions. Absolute shares (|drop| / sum of |drops|) "
                  "say which regions the decision depends on; signed shares can be negative (removing the region "
                  "made the model more confident) and cancel between images. Everything outside the lungs counts "
                  "against lung reliance.")
    return table


def _ablation_figure(models: dict[str, AuditModel], out: Path, shortcut_masks: bool = True) -> dict[str, Any] | None:
    regions = ["lungs", *SHORTCUT_KINDS.values(), "rest"] if shortcut_masks else ["lungs", "rest"]
    series, kinds = {}, set()
    for name, entry in models.items():
        shares, kind = ablation_shares(entry)
        if shares is not None:
            series[name] = [getattr(shares, r) for r in regions]
            kinds.add(kind)
    values = [v for vs in series.values() for v in vs if is_number(v)]
    if not values:
        return None
    low = min([0.0, *values]) - 0.05
    high = max([1.0, *values]) + 0.05 if max(values, default=0) > 0.95 else max([0.5, *values]) + 0.05
    figures.grouped_bars(out / "fig_region_ablation.png", groups=[r.replace("_", "\n") for r in regions],
                         series=series, ylabel="share of logit drop", ylim=(low, high))
    missing = "" if shortcut_masks else " Shortcut regions are not shown: the cache has no shortcut mask."
    return {"src": "fig_region_ablation.png", "alt": "region ablation share per region and model",
            "caption": f"Region ablation per model ({' / '.join(sorted(kinds))} shares): which regions the decision "
                       f"depends on; a bar missing from a group was not measured.{missing}"}


def ablation_text(audit: AuditFile, models: dict[str, AuditModel]) -> str:
    """"Region ablation not measured (<reason>)" when no model has region-ablation shares, else ""."""
    if any(ablation_shares(e)[0] is not None for e in models.values()):
        return ""
    reasons = [s.reason for s in audit.skipped if s.metric == "region_ablation_share"]
    reasons += [r for e in models.values() for r in (reason_of(e, "region_ablation_abs_share"),
                                                      reason_of(e, "region_ablation_share")) if r]
    return f"Region ablation: not measured ({reasons[0] if reasons else 'absent from audit.json'})."


def _variant_cell(block: Interventions, name: str, prefix: str) -> Cell:
    """An intervention's accuracy, flagged when its predictions were one class or it does not beat the majority
    rate of the same images (audit's ``<prefix>constant_predictor`` / ``<prefix>majority_accuracy``)."""
    value = getattr(block, name)
    base = rate_cell(value, reason=reason_of(block, name))
    if not is_number(value):
        return base
    majority = getattr(block, f"{prefix}majority_accuracy")
    if getattr(block, f"{prefix}constant_predictor") is True:
        return Cell(f"{base.text} (constant predictor)", base.sort, "flag")
    if is_number(majority) and value <= majority:
        return Cell(f"{base.text} (≤ majority {100 * majority:.1f}%)", base.sort, "flag")
    return base


def _evaluate_block(metrics: MetricsFile | None, name: str, scope: str) -> GroupScores | None:
    """evaluate's scores of the same checkpoint on the same scope ("overall" or a site), None when not scored."""
    entry = metrics.models.get(name) if metrics is not None else None
    if entry is None:
        return None
    return entry.overall if scope == "overall" else entry.per_site.get(scope)


def interventions_table(models: dict[str, AuditModel], metrics: MetricsFile | None = None, *,
                        estimated: bool = False) -> Table:
    """Per model and scope: evaluate's accuracy of the checkpoint (one accuracy per checkpoint on the page) and the
    audit's accuracies with lungs only / lungs removed, each beside its always-majority rate. Every rate sits beside
    the n it was computed on: the labelled images evaluate scored (the audit's labelled images where evaluate did
    not score the checkpoint), the labelled images with a lung mask, the counterfactual pairs."""
    from pipeline.report.site_metrics import accuracy_cell, majority_cell

    table = Table(["model", "scope", "n labelled", "accuracy (evaluate)", "always-majority",
                   "n labelled (lung mask)", "lungs only", "lungs removed", "counterfactual flip rate", "pairs"],
                  caption="Interventions: accuracy when image regions are replaced",
                  numeric=[False, False, True, True, True, True, True, True, True, True])
    for name, entry in models.items():
        blocks = entry.interventions
        for scope, block in [("overall", blocks.overall), *blocks.per_site.items()]:
            evaluated = _evaluate_block(metrics, name, scope)
            unlabelled = "no labelled image" if block.n_labelled == 0 else None
            accuracy = accuracy_cell(evaluated) if evaluated else cell(None, reason=unlabelled or "not in metrics.json")
            majority = majority_cell(evaluated) if evaluated else rate_cell(
                block.majority_accuracy, css="muted", reason=reason_of(block, "majority_accuracy") or unlabelled)
            table.add([name, scope, cell(evaluated.n if evaluated else block.n_labelled), accuracy, majority,
                       cell(block.n_labelled_lung_masks),
                       mark_estimated(_variant_cell(block, "lung_only_accuracy", "lung_only_"), estimated),
                       mark_estimated(_variant_cell(block, "lungs_removed_accuracy", "lungs_removed_"), estimated),
                       rate_cell(block.counterfactual_flip_rate, reason=reason_of(block, "counterfactual_flip_rate")),
                       cell(block.n_counterfactual)])
    table.note = ("Accuracy: evaluate's thresholded accuracy of the same checkpoint (Section 3), on the labelled "
                  "images evaluate scored (n labelled; the audit's labelled images where evaluate did not score it). "
                  "Lungs only: everything outside the lungs replaced (a lung-reading model keeps its accuracy). Lungs "
                  "removed: the lungs replaced (a lung-reading model falls to the always-majority rate or below); "
                  "both on the labelled images with a lung mask (n labelled (lung mask)). A variant whose "
                  "predictions are all one class, or that does not beat the majority rate of its images, is flagged. "
                  "Flip rate: share of images whose prediction changes when only the acquisition position changes, "
                  "labelled or not (pairs).")
    return table


def threshold_line(audit: AuditFile, metrics: MetricsFile | None) -> str:
    """Which threshold the audit's interventions used, and whether it is evaluate's."""
    differ = []
    for name, entry in audit.models.items():
        scored = metrics.models.get(name) if metrics is not None else None
        if scored is not None and abs(entry.threshold.value - scored.threshold) > 1e-6:
            differ.append(f"{name} ({entry.threshold.value:.2f} vs {scored.threshold:.2f})")
    texts = {n: threshold_text(e.threshold.value, e.threshold.source) for n, e in audit.models.items()}
    shown = next(iter(texts.values())) if len(set(texts.values())) == 1 else \
        "; ".join(f"{n}: {t}" for n, t in texts.items())
    line = f"The audit scored its interventions and gallery predictions at {shown}."
    if differ:
        line += " That differs from evaluate's threshold for " + ", ".join(differ) + ": compare with care."
    return line


def probe_table(models: dict[str, AuditModel]) -> Table:
    targets = list(dict.fromkeys(t for e in models.values() for t in e.probe_balanced_accuracy))
    table = Table(["model", *[f"{t.replace('_', ' ')} (chance)" for t in targets]],
                  caption="Linear probes on the frozen features: balanced accuracy",
                  numeric=[False] + [True] * len(targets))
    for name, entry in models.items():
        probes, chance = entry.probe_balanced_accuracy, entry.probe_chance
        if not probes:
            continue
        row = [cell(name)]
        for t in targets:
            value = probes.get(t)
            why = entry.probe_not_measured.get(t) or next((n for n in entry.probe_notes if n.startswith(t)), None)
            c = rate_cell(value, reason=why)
            if is_number(value) and is_number(chance.get(t)):
                c = Cell(f"{c.text} ({100 * chance[t]:.0f}%)", c.sort)
            row.append(c)
        table.add(row)
    notes = sorted({n for e in models.values() for n in e.probe_notes})
    table.note = ("High means the representation encodes the attribute: compare each value with its chance level "
                  "(in brackets) and the models with each other." + "".join(f" {n}" for n in notes))
    return table


def sanity_table(models: dict[str, AuditModel]) -> Table:
    methods = list(dict.fromkeys(m for e in models.values() for m in e.methods))
    table = Table(["model", *[method_label(m) for m in methods]],
                  caption="Rank correlation with a randomly re-initialised model's attributions (low is good)",
                  numeric=[False] + [True] * len(methods))
    for name, entry in models.items():
        row = [cell(name)]
        for m in methods:
            result = entry.methods.get(m)
            value = result.randomisation_rank_correlation if result is not None else None
            row.append(num_cell(value, digits=2, css="flag" if is_number(value) and value > 0.5 else "",
                                reason=reason_of(result, "randomisation_rank_correlation") if result is not None
                                else "method not run for this model"))
        table.add(row)
    table.note = ("Adebayo et al. 2018: a map that barely changes when the weights are randomised does not explain "
                  "what the model learnt. Values above 0.5 are flagged.")
    return table


MIN_BEHAVIOUR_GAP = 0.05  # algorithms closer than this in region-ablation shortcut share are not ranked


def _mean(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values if is_number(v)]
    return sum(numbers) / len(numbers) if numbers else None


def disagreements(models: dict[str, AuditModel]) -> list[str]:
    """Where a method ranks the algorithms' shortcut use (mean over seeds) differently from region ablation, say
    so (docs/design/cohort.md target 4). Seeds of one algorithm are not compared with each other: that is noise."""
    by_algorithm: dict[str, list[AuditModel]] = {}
    for entry in models.values():
        by_algorithm.setdefault(entry.algorithm, []).append(entry)
    behaviour = {a: _mean([shortcut_share(ablation_shares(e)[0]) for e in entries])
                 for a, entries in by_algorithm.items()}
    behaviour = {a: v for a, v in behaviour.items() if v is not None}
    if len(behaviour) < 2:
        return []
    ranked = sorted(behaviour, key=behaviour.get)
    least, most = ranked[0], ranked[-1]
    if behaviour[most] - behaviour[least] < MIN_BEHAVIOUR_GAP:
        return []
    lines = []
    methods = list(dict.fromkeys(m for e in models.values() for m in e.methods))
    for m in methods:
        a = _mean([_overall_of(e, m, "shortcut_mass_fraction") for e in by_algorithm[least]])
        b = _mean([_overall_of(e, m, "shortcut_mass_fraction") for e in by_algorithm[most]])
        if a is not None and b is not None and a > b:
            lines.append(f"{method_label(m)} disagrees with the behavioural measurement: region ablation says "
                         f"{most} depends more on shortcut regions than {least} ({100 * behaviour[most]:.0f}% vs "
                         f"{100 * behaviour[least]:.0f}%, mean over seeds), but {method_label(m)} puts less of "
                         f"{most}'s attribution there ({100 * b:.1f}% vs {100 * a:.1f}%). Trust the behaviour.")
    return lines


def _overlays_by_image(audit: AuditFile) -> tuple[dict[str, dict[str, Overlay]], dict[str, Overlay]]:
    """({image id: {model: overlay}}, {image id: its first overlay (site, position, label, methods)}) over
    audit.json's ``overlays`` that name a file."""
    by_image: dict[str, dict[str, Overlay]] = {}
    info: dict[str, Overlay] = {}
    for item in audit.overlays:
        if not item.file:
            continue
        by_image.setdefault(item.image_id, {})[item.model] = item
        info.setdefault(item.image_id, item)
    return by_image, info


def _lowest_seed_runs(models: dict[str, AuditModel], drawn: list[str]) -> list[str]:
    """One run per algorithm (its lowest seed) among ``drawn``, in ``drawn`` order: keeps the panels large enough to
    read."""
    first: dict[str, str] = {}
    for n in sorted(drawn, key=lambda n: (str(models[n].seed), n)):
        first.setdefault(models[n].algorithm, n)
    return [n for n in drawn if n in first.values()]


def _balanced_images(by_image: dict[str, dict[str, Overlay]], info: dict[str, Overlay], names: list[str],
                     max_images: int) -> list[str]:
    """Up to ``max_images`` image ids: those every model in ``names`` has an overlay of (else all), picked in turn
    over site x position x label strata, then sorted by stratum."""
    complete = [i for i in by_image if all(n in by_image[i] for n in names)] or list(by_image)

    def stratum(i: str) -> tuple[str, str, str]:
        return info[i].site, info[i].position, str(info[i].label)

    strata: dict[tuple[str, str, str], list[str]] = {}
    for image_id in sorted(complete):
        strata.setdefault(stratum(image_id), []).append(image_id)
    chosen: list[str] = []
    while len(chosen) < max_images and any(strata.values()):  # round-robin: every stratum gets its turn
        for key in sorted(strata):
            if strata[key] and len(chosen) < max_images:
                chosen.append(strata[key].pop(0))
    return sorted(chosen, key=lambda i: (*stratum(i), i))


def _gallery_panel(item: Overlay | None, *, model: str, image_id: str, truth: int | None, audit_dir: Path,
                   out: Path) -> dict[str, Any] | None:
    """One model's overlay of one image, copied beside the report, with its prediction judged (None: no file)."""
    src = _copy_overlay(audit_dir, out, item.file) if item is not None else None
    if src is None:
        return None
    pred = LABEL_NAMES.get(item.prediction, str(item.prediction))
    # an unlabelled image cannot be right or wrong: no judgement is shown
    verdict = "label unknown" if truth is None else "correct" if item.prediction == truth else "wrong"
    return {"src": src, "alt": f"{model} on {image_id}: predicted {pred} ({verdict})",
            "caption": f"predicted {pred} ({verdict})", "css": verdict if verdict in ("correct", "wrong") else "muted"}


def gallery(audit: AuditFile, models: dict[str, AuditModel], audit_dir: Path, out: Path,
            max_images: int = MAX_GALLERY_IMAGES, lungs_drawn: bool = True,
            image_size: int | None = None) -> list[dict[str, Any]]:
    """Rows = images (grouped by site and position), columns = models; overlay files are copied beside the report."""
    by_image, info = _overlays_by_image(audit)
    drawn = [n for n in models if any(n in v for v in by_image.values())]
    names = _lowest_seed_runs(models, drawn)
    if not names:
        return []
    chosen = _balanced_images(by_image, info, names, max_images)
    rows = []
    for image_id in chosen:
        meta = info[image_id]
        truth = meta.label
        label = LABEL_NAMES.get(truth, "label unknown") if truth is not None else "label unknown"
        images = [_gallery_panel(by_image[image_id].get(n), model=n, image_id=image_id, truth=truth,
                                 audit_dir=audit_dir, out=out) for n in names]
        rows.append({"label": f"{meta.site} · {meta.position} · {label}", "images": images})
    methods = [method_label(m) for m in info[chosen[0]].methods] if chosen else []
    image = "the image with its lung contour" if lungs_drawn else "the image (no lung mask to outline)"
    note = (f"Each panel: {image}, then " + ", ".join(methods) + "." if methods else "")
    note += "".join(f" {line}" for line in flat_notes(models, names, image_size))
    title = f"The same {audit.split} images for each algorithm" + (
        " (one run each, its lowest seed)." if len(drawn) > len(names) else ".")
    return [{"title": title, "note": note, "columns": names, "rows": rows}]


GRAD_CAM_STRIDE = 32  # the backbones' last stage is 1/32 of the input side: Grad-CAM's resolution


def flat_notes(models: dict[str, AuditModel], names: list[str], image_size: int | None) -> list[str]:
    """A note per method whose maps are flat (near-constant) for the shown models: the sanity check found every
    map constant, or Grad-CAM's last stage is about one cell at this image size. A flat map localises nothing."""
    lines = []
    methods = list(dict.fromkeys(m for n in names for m in models[n].methods))
    for method in methods:
        constant = [n for n in names if "constant" in str(reason_of(
            models[n].methods.get(method), "randomisation_rank_correlation") or "")]
        cells = image_size // GRAD_CAM_STRIDE if method == "grad_cam" and image_size else None
        if cells is not None and cells < 2:
            lines.append(f"{method_label(method)} at {image_size} px: the last stage is about {max(cells, 1)}×"
                         f"{max(cells, 1)} cell, so its map is flat (near-constant) and says nothing about where "
                         "the model looks.")
        elif constant:
            lines.append(f"{method_label(method)} maps are flat (every sanity-check map constant) for "
                         f"{', '.join(constant)}: they say nothing about where the model looks.")
    return lines


def _copy_overlay(audit_dir: Path, out: Path, relative: str) -> str | None:
    source = audit_dir / relative
    if not source.is_file():
        return None
    target = out / "overlays" / Path(relative).name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return f"overlays/{target.name}"


def cache_size(ingest_dir: Path | None) -> int | None:
    """The ingest cache's image side in pixels (cache/cache.json ``size``), None when unknown."""
    import json

    path = Path(ingest_dir) / "cache" / "cache.json" if ingest_dir is not None else None
    try:
        size = json.loads(path.read_text(encoding="utf-8")).get("size") if path and path.is_file() else None
    except (OSError, ValueError):
        return None
    return int(size) if is_number(size) else None


def _audit_lines(audit: AuditFile, metrics: MetricsFile | None, lung_status: tuple[str, str]) -> list[str]:
    status, phrase = lung_status
    lines = [f"Measured on the {audit.split} split; {phrase}. Read the behavioural measurements "
             "(interventions, region ablation, counterfactual flips) first: attribution maps can disagree with them."]
    if status == "estimated":
        lines.append("Some or all lung masks are ESTIMATED (two fixed ellipses): every lung number resting on them is "
                     "an estimate.")
    if status == "absent":
        lines.append("No image has a lung mask: every lung number is not measured.")
    if not audit.shortcut_masks:
        lines.append("The cache has no shortcut mask: every shortcut-region number is not measured.")
    lines.append(threshold_line(audit, metrics))
    lines += [f"Skipped {skipped.metric}: {skipped.reason}." for skipped in audit.skipped]
    return lines


def _flips_table(models: dict[str, AuditModel]) -> Table:
    """Each model's counterfactual flip rate, where the audit measured one."""
    flips = Table(["model", "flip rate", "pairs"], caption="Counterfactual pairs: same patient, other position",
                  numeric=[False, True, True])
    for name, entry in models.items():
        block = entry.interventions.overall
        if is_number(block.counterfactual_flip_rate):
            flips.add([name, rate_cell(block.counterfactual_flip_rate), cell(block.n_counterfactual)])
    return flips


def _figures(models: dict[str, AuditModel], out: Path, *, shortcut_masks: bool, estimated: bool
             ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The localisation and region-ablation figures (None: nothing measured to draw), captions saying when the lung
    values rest on estimated masks."""
    figures_drawn = _method_figure(models, out), _ablation_figure(models, out, shortcut_masks)
    for figure in figures_drawn:
        if figure and estimated:
            figure["caption"] += " Lung values are estimated: they rest on ESTIMATED lung masks (fixed ellipses)."
    return figures_drawn


def _pairs(audit: AuditFile, ingest_dir: Path | None, out: Path, *, synthetic: bool) -> dict[str, Any] | None:
    """The counterfactual pairs figure from the ingest cache (the gallery's images first), None without one."""
    if ingest_dir is None or not audit.counterfactuals:
        return None
    from pipeline.report.pairs import pairs_figure

    return pairs_figure(ingest_dir, out, split=audit.split, prefer=[o.image_id for o in audit.overlays],
                        synthetic=synthetic)


def build_audit(audit: AuditFile | None, audit_dir: Path | None, out: Path,
                ingest_dir: Path | None = None, metrics: MetricsFile | None = None,
                synthetic: bool = False) -> dict[str, Any]:
    from pipeline.report.verdict import lung_mask_status

    models = audit.models if audit is not None else {}
    if audit is None or not models or audit_dir is None:
        return {"available": False, "reason": "No audit results (audit.json) were found: run `cxr-fishr audit`."}
    masks = audit.shortcut_masks
    flips = _flips_table(models)
    lung_status = lung_mask_status(audit.lung_masks.model_dump())
    galleries = gallery(audit, models, audit_dir, out, lungs_drawn=lung_status[0] != "absent",
                        image_size=cache_size(ingest_dir))
    estimated = lung_status[0] == "estimated"
    localisation_figure, ablation_figure = _figures(models, out, shortcut_masks=masks, estimated=estimated)
    probes = probe_table(models)
    interventions = interventions_table(models, metrics, estimated=estimated)
    pairs = _pairs(audit, ingest_dir, out, synthetic=synthetic)
    return {
        "available": True,
        "lines": _audit_lines(audit, metrics, lung_status),
        "localisation": localisation_table(models, shortcut_masks=masks, split=audit.split, estimated=estimated),
        "localisation_detail": localisation_table(models, detail=True, shortcut_masks=masks, estimated=estimated),
        "localisation_figure": localisation_figure,
        "localisation_text": "" if localisation_figure else
        "No figure: no attribution mass was measured (see the reasons in the table).",
        "ablation": ablation_table(models, shortcut_masks=masks, estimated=estimated),
        "ablation_figure": ablation_figure,
        "ablation_text": ablation_text(audit, models),
        "galleries": galleries,
        "gallery_text": "The audit wrote no overlay images." if not galleries else "",
        "interventions": interventions,
        "interventions_text": "" if not interventions.empty else "No intervention was run (audit.json has none).",
        "counterfactual": flips if not flips.empty else None,
        "counterfactual_text": "" if not flips.empty else "No counterfactual images were available (synth "
                                                          "--counterfactual position, then ingest with "
                                                          "counterfactual_source).",
        "pairs_figure": pairs,
        "probes": probes,
        "probes_text": "" if not probes.empty else "No probe was run (audit.json has no probe results).",
        "sanity": sanity_table(models),
        "disagreements": disagreements(models),
    }
