"""Section 4: the shortcut audit from ``audit.json`` (docs/audit.md has its keys): localisation, region ablation,
saliency gallery (the same images for every model, side by side), interventions, probes and the sanity check.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pipeline.regions import SHORTCUT_KINDS
from pipeline.report import figures
from pipeline.report.tables import MISSING, Cell, Table, cell, is_number, num_cell, rate_cell

METHOD_LABELS = {"integrated_gradients": "Integrated Gradients", "saliency": "Saliency", "grad_cam": "Grad-CAM",
                 "occlusion": "Occlusion"}
LABEL_NAMES = {0: "no finding", 1: "COVID-19"}
MAX_GALLERY_IMAGES = 12


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def audit_models(audit: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {str(k): v for k, v in ((audit or {}).get("models") or {}).items() if isinstance(v, dict)}


def shortcut_share(shares: dict[str, Any]) -> float | None:
    """Sum of the region-ablation shares of every shortcut kind (None when none was measured)."""
    values = [shares.get(kind) for kind in SHORTCUT_KINDS.values() if is_number(shares.get(kind))]
    return float(sum(values)) if values else None


def localisation_table(models: dict[str, dict[str, Any]], *, detail: bool = False) -> Table:
    """Overall per model and method; with ``detail``, per site and per position as well (a collapsed table)."""
    caption = "By site and position" if detail else "Where the positive attribution falls (test split)"
    table = Table(["model", "method", "scope", "n valid", "lung mass", "shortcut mass", "lung focus ratio",
                   "pointing game", "rule"], caption=caption, collapsed=detail,
                  numeric=[False, False, False, True, True, True, True, True, False])
    for name, entry in models.items():
        rule = str(entry.get("selection_rule"))
        for method, result in (entry.get("methods") or {}).items():
            scopes = [] if detail else [("overall", result.get("overall") or {})]
            for prefix, key in (("site", "per_site"), ("position", "per_position")) if detail else ():
                scopes += [(f"{prefix} {k}", v) for k, v in (result.get(key) or {}).items()]
            for scope, block in scopes:
                css = ""
                table.add([name, method_label(method), Cell(scope, scope, css), cell(block.get("n_valid")),
                           rate_cell(block.get("lung_mass_fraction")), rate_cell(block.get("shortcut_mass_fraction")),
                           num_cell(block.get("lung_focus_ratio"), digits=2), rate_cell(block.get("pointing_game")),
                           Cell(rule, rule, "muted")])
    table.note = ("Lung/shortcut mass: share of positive attribution inside the lungs / the shortcut regions. Lung "
                  "focus ratio: lung mass over lung area (1 = chance). Pointing game: share of images whose "
                  "attribution peak lies in the lungs.")
    return table


def _method_figure(models: dict[str, dict[str, Any]], out: Path) -> dict[str, Any] | None:
    methods = list(dict.fromkeys(m for e in models.values() for m in (e.get("methods") or {})))
    if not methods:
        return None
    short = [method_label(m).replace("Integrated Gradients", "Int. Grad.") for m in methods]
    panels = []
    for key, title in (("lung_mass_fraction", "inside the lungs"), ("shortcut_mass_fraction", "inside shortcut regions")):
        series = {name: [(((entry.get("methods") or {}).get(m) or {}).get("overall") or {}).get(key) for m in methods]
                  for name, entry in models.items()}
        panels.append({"groups": short, "series": series, "ylabel": "share of positive attribution", "title": title})
    figures.bar_panels(out / "fig_localisation.png", panels, width_in=max(9.0, 2.2 * len(methods) + 2))
    return {"src": "fig_localisation.png", "alt": "attribution mass in lungs and shortcut regions per method",
            "caption": "Share of positive attribution inside the lungs (left) and inside shortcut regions (right), "
                       "per attribution method and model (test split)."}


def ablation_table(models: dict[str, dict[str, Any]]) -> Table:
    regions = ["lungs", *SHORTCUT_KINDS.values(), "rest"]
    table = Table(["model", "n", *[r.replace("_", " ") for r in regions], "all shortcuts"],
                  caption="Region ablation: share of the predicted class's logit drop per region",
                  numeric=[False] + [True] * (len(regions) + 2))
    for name, entry in models.items():
        shares = (entry.get("region_ablation_share") or {}).get("overall") or {}
        if not shares:
            continue
        table.add([name, cell(shares.get("n")), *[rate_cell(shares.get(r)) for r in regions],
                   rate_cell(shortcut_share(shares))])
    table.note = ("Behavioural: each region is replaced by the image's mean outside-lung value and the drop of the "
                  "predicted class's logit is shared out over the regions (negative: removing it made the model "
                  "more confident). A model that looks at the lungs has most of its share there.")
    return table


def _ablation_figure(models: dict[str, dict[str, Any]], out: Path) -> dict[str, Any] | None:
    regions = ["lungs", *SHORTCUT_KINDS.values(), "rest"]
    series = {n: [((e.get("region_ablation_share") or {}).get("overall") or {}).get(r) for r in regions]
              for n, e in models.items() if (e.get("region_ablation_share") or {}).get("overall")}
    if not series:
        return None
    values = [v for vs in series.values() for v in vs if is_number(v)]
    low = min([0.0, *values]) - 0.05
    high = max([1.0, *values]) + 0.05 if max(values, default=0) > 0.95 else max([0.5, *values]) + 0.05
    figures.grouped_bars(out / "fig_region_ablation.png", groups=[r.replace("_", "\n") for r in regions],
                         series=series, ylabel="share of logit drop", ylim=(low, high))
    return {"src": "fig_region_ablation.png", "alt": "region ablation share per region and model",
            "caption": "Region ablation per model: which regions the decision depends on."}


def interventions_table(models: dict[str, dict[str, Any]]) -> Table:
    table = Table(["model", "scope", "n", "accuracy", "lungs only", "lungs removed", "counterfactual flip rate",
                   "pairs"], caption="Interventions: accuracy when image regions are replaced",
                  numeric=[False, False, True, True, True, True, True, True])
    for name, entry in models.items():
        blocks = entry.get("interventions") or {}
        scopes = [("overall", blocks.get("overall") or {})] + list((blocks.get("per_site") or {}).items())
        for scope, block in scopes:
            if not block:
                continue
            table.add([name, scope, cell(block.get("n")), rate_cell(block.get("accuracy")),
                       rate_cell(block.get("lung_only_accuracy")), rate_cell(block.get("lungs_removed_accuracy")),
                       rate_cell(block.get("counterfactual_flip_rate")), cell(block.get("n_counterfactual"))])
    table.note = ("Lungs only: everything outside the lungs replaced (a lung-reading model keeps its accuracy). "
                  "Lungs removed: the lungs replaced (a lung-reading model falls to chance). Flip rate: share of "
                  "patients whose prediction changes when only the acquisition position changes.")
    return table


def probe_table(models: dict[str, dict[str, Any]]) -> Table:
    targets = list(dict.fromkeys(t for e in models.values() for t in (e.get("probe_balanced_accuracy") or {})))
    table = Table(["model", *[f"{t.replace('_', ' ')} (chance)" for t in targets]],
                  caption="Linear probes on the frozen features: balanced accuracy",
                  numeric=[False] + [True] * len(targets))
    for name, entry in models.items():
        probes, chance = entry.get("probe_balanced_accuracy") or {}, entry.get("probe_chance") or {}
        if not probes:
            continue
        row = [cell(name)]
        for t in targets:
            value = probes.get(t)
            c = rate_cell(value)
            if is_number(value) and is_number(chance.get(t)):
                c = Cell(f"{c.text} ({100 * chance[t]:.0f}%)", c.sort)
            row.append(c)
        table.add(row)
    notes = sorted({str(n) for e in models.values() for n in (e.get("probe_notes") or [])})
    table.note = ("High means the representation encodes the attribute. Chest X-rays encode age and sex for any "
                  "model: compare models with each other, not against zero." + "".join(f" {n}" for n in notes))
    return table


def sanity_table(models: dict[str, dict[str, Any]]) -> Table:
    methods = list(dict.fromkeys(m for e in models.values() for m in (e.get("methods") or {})))
    table = Table(["model", *[method_label(m) for m in methods]],
                  caption="Rank correlation with a randomly re-initialised model's attributions (low is good)",
                  numeric=[False] + [True] * len(methods))
    for name, entry in models.items():
        row = [cell(name)]
        for m in methods:
            value = ((entry.get("methods") or {}).get(m) or {}).get("randomisation_rank_correlation")
            row.append(num_cell(value, digits=2, css="flag" if is_number(value) and value > 0.5 else ""))
        table.add(row)
    table.note = ("Adebayo et al. 2018: a map that barely changes when the weights are randomised does not explain "
                  "what the model learnt. Values above 0.5 are flagged.")
    return table


def _shortcut_mass(entry: dict[str, Any], method: str) -> Any:
    return (((entry.get("methods") or {}).get(method) or {}).get("overall") or {}).get("shortcut_mass_fraction")


MIN_BEHAVIOUR_GAP = 0.05  # algorithms closer than this in region-ablation shortcut share are not ranked


def _mean(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values if is_number(v)]
    return sum(numbers) / len(numbers) if numbers else None


def disagreements(models: dict[str, dict[str, Any]]) -> list[str]:
    """Where a method ranks the algorithms' shortcut use (mean over seeds) differently from region ablation, say
    so (COHORT.md target 4). Seeds of one algorithm are not compared with each other: that is noise."""
    by_algorithm: dict[str, list[dict[str, Any]]] = {}
    for name, entry in models.items():
        by_algorithm.setdefault(str(entry.get("algorithm", name)), []).append(entry)
    behaviour = {a: _mean([shortcut_share((e.get("region_ablation_share") or {}).get("overall") or {})
                           for e in entries]) for a, entries in by_algorithm.items()}
    behaviour = {a: v for a, v in behaviour.items() if v is not None}
    if len(behaviour) < 2:
        return []
    ranked = sorted(behaviour, key=behaviour.get)
    least, most = ranked[0], ranked[-1]
    if behaviour[most] - behaviour[least] < MIN_BEHAVIOUR_GAP:
        return []
    lines = []
    methods = list(dict.fromkeys(m for e in models.values() for m in (e.get("methods") or {})))
    for m in methods:
        a = _mean([_shortcut_mass(e, m) for e in by_algorithm[least]])
        b = _mean([_shortcut_mass(e, m) for e in by_algorithm[most]])
        if a is not None and b is not None and a > b:
            lines.append(f"{method_label(m)} disagrees with the behavioural measurement: region ablation says "
                         f"{most} depends more on shortcut regions than {least} ({100 * behaviour[most]:.0f}% vs "
                         f"{100 * behaviour[least]:.0f}%, mean over seeds), but {method_label(m)} puts less of "
                         f"{most}'s attribution there ({100 * b:.0f}% vs {100 * a:.0f}%). Trust the behaviour.")
    return lines


def gallery(audit: dict[str, Any], models: dict[str, dict[str, Any]], audit_dir: Path, out: Path,
            max_images: int = MAX_GALLERY_IMAGES) -> list[dict[str, Any]]:
    """Rows = images (grouped by site and position), columns = models; overlay files are copied beside the report."""
    by_image: dict[str, dict[str, dict[str, Any]]] = {}
    info: dict[str, dict[str, Any]] = {}
    for item in audit.get("overlays") or []:
        if not isinstance(item, dict) or not item.get("file"):
            continue
        image_id = str(item.get("image_id"))
        by_image.setdefault(image_id, {})[str(item.get("model"))] = item
        info.setdefault(image_id, item)
    drawn = [n for n in models if any(n in v for v in by_image.values())]
    # One run per algorithm (its lowest seed) keeps the panels large enough to read.
    first: dict[str, str] = {}
    for n in sorted(drawn, key=lambda n: (str(models[n].get("seed")), n)):
        first.setdefault(str(models[n].get("algorithm", n)), n)
    names = [n for n in drawn if n in first.values()]
    if not names:
        return []
    # The same images for every model first; then a balanced pick over site x position x label.
    complete = [i for i in by_image if all(n in by_image[i] for n in names)] or list(by_image)
    def stratum(i: str) -> tuple[str, str, str]:
        return str(info[i].get("site")), str(info[i].get("position")), str(info[i].get("label"))

    strata: dict[tuple[str, str, str], list[str]] = {}
    for image_id in sorted(complete):
        strata.setdefault(stratum(image_id), []).append(image_id)
    chosen: list[str] = []
    while len(chosen) < max_images and any(strata.values()):  # round-robin: every stratum gets its turn
        for key in sorted(strata):
            if strata[key] and len(chosen) < max_images:
                chosen.append(strata[key].pop(0))
    chosen.sort(key=lambda i: (*stratum(i), i))
    rows = []
    for image_id in chosen:
        meta = info[image_id]
        label = LABEL_NAMES.get(_int(meta.get("label")), str(meta.get("label")))
        images = []
        for n in names:
            item = by_image[image_id].get(n)
            src = _copy_overlay(audit_dir, out, item["file"]) if item else None
            if src is None:
                images.append(None)
                continue
            pred = LABEL_NAMES.get(_int(item.get("prediction")), str(item.get("prediction")))
            verdict = "correct" if _int(item.get("prediction")) == _int(meta.get("label")) else "wrong"
            images.append({"src": src, "alt": f"{n} on {image_id}: predicted {pred} ({verdict})",
                           "caption": f"predicted {pred} ({verdict})", "css": verdict})
        rows.append({"label": f"{meta.get('site')} · {meta.get('position')} · {label}", "images": images})
    methods = [method_label(m) for m in (info[chosen[0]].get("methods") or [])] if chosen else []
    note = ("Each panel: the image with its lung contour, then " + ", ".join(methods) + "." if methods else "")
    title = "The same test images for each algorithm" + (" (one run each, its lowest seed)." if len(drawn) > len(names)
                                                         else ".")
    return [{"title": title, "note": note, "columns": names, "rows": rows}]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _copy_overlay(audit_dir: Path, out: Path, relative: str) -> str | None:
    source = audit_dir / relative
    if not source.is_file():
        return None
    target = out / "overlays" / Path(relative).name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return f"overlays/{target.name}"


def build_audit(audit: dict[str, Any] | None, audit_dir: Path | None, out: Path,
                ingest_dir: Path | None = None) -> dict[str, Any]:
    models = audit_models(audit)
    if not audit or not models or audit_dir is None:
        return {"available": False, "reason": "No audit results (audit.json) were found: run `cxr-fishr audit`."}
    lines = [f"Measured on the {audit.get('split', 'test')} split; lung masks from {audit.get('lung_masks', '?')}."
             " Read the behavioural measurements (interventions, region ablation, counterfactual flips) first: "
             "attribution maps can disagree with them."]
    if audit.get("lung_masks") == "estimated":
        lines.append("The lung masks are ESTIMATED (two fixed ellipses): every lung number is an estimate.")
    for skipped in audit.get("skipped") or []:
        if isinstance(skipped, dict):
            lines.append(f"Skipped {skipped.get('metric')}: {skipped.get('reason')}.")
    counterfactual = interventions_table({n: e for n, e in models.items()})
    has_flips = any(is_number(((e.get("interventions") or {}).get("overall") or {}).get("counterfactual_flip_rate"))
                    for e in models.values())
    flips = Table(["model", "flip rate", "pairs"], caption="Counterfactual pairs: same patient, other position",
                  numeric=[False, True, True])
    for name, entry in models.items():
        block = (entry.get("interventions") or {}).get("overall") or {}
        if is_number(block.get("counterfactual_flip_rate")):
            flips.add([name, rate_cell(block.get("counterfactual_flip_rate")), cell(block.get("n_counterfactual"))])
    galleries = gallery(audit, models, audit_dir, out)
    pairs = None
    if ingest_dir is not None and audit.get("counterfactuals") is not False:
        from pipeline.report.pairs import pairs_figure

        prefer = [str(o.get("image_id")) for o in audit.get("overlays") or [] if isinstance(o, dict)]
        pairs = pairs_figure(ingest_dir, out, split=str(audit.get("split", "test")), prefer=prefer)
    return {
        "available": True,
        "lines": lines,
        "localisation": localisation_table(models),
        "localisation_detail": localisation_table(models, detail=True),
        "localisation_figure": _method_figure(models, out),
        "ablation": ablation_table(models),
        "ablation_figure": _ablation_figure(models, out),
        "galleries": galleries,
        "gallery_text": "The audit wrote no overlay images." if not galleries else "",
        "interventions": counterfactual,
        "counterfactual": flips if has_flips else None,
        "counterfactual_text": "" if has_flips else "No counterfactual images were available (synth "
                                                    "--counterfactual position, then ingest with counterfactual_source).",
        "pairs_figure": pairs,
        "probes": probe_table(models),
        "sanity": sanity_table(models),
        "disagreements": disagreements(models),
        "missing_value": MISSING,
    }
