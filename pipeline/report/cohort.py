"""Section 2: the cohort: counts per site x position x label, the shortcut's strength per site, ages, rejects.

Counts come from the manifest's non-identifying columns; the warnings ingest wrote (summary.json) are repeated.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.protocol.labels import LABEL_NAMES as LABELS
from pipeline.protocol.labels import NEGATIVE_NAME, POSITIVE_NAME
from pipeline.protocol.shortcuts import attribute_values
from pipeline.report import figures
from pipeline.report.loading import ReportInputs
from pipeline.report.tables import Cell, Table, cell, ci_cell, is_number, num_cell, p_cell, rate_cell

if TYPE_CHECKING:
    from pipeline.artefacts.ingest_summary import IngestSummary
    from pipeline.artefacts.stage_file import StageFile

SPLIT_ORDER = {"train": 0, "val": 0, "ood_val": 1, "test": 2}


def _site_order(frame: Any) -> list[str]:
    """Training sites first, then the validation hospital, then the test hospital."""
    role = frame.groupby("site")["split"].agg(lambda s: min(SPLIT_ORDER.get(str(v), 3) for v in s))
    return sorted(role.index.astype(str), key=lambda site: (role[site], site))


@dataclass(frozen=True)
class Trained:
    """The sites the evaluated/audited models trained on, from the train stages' ``training_domains`` mapped onto
    this ingest's sites through their ``domain_columns``; ``runs`` names the runs, ``domains`` their domains."""

    sites: frozenset[str]
    runs: tuple[str, ...]
    domains: tuple[str, ...]


def trained_sites(frame: Any, stages: dict[str, StageFile]) -> Trained | None:
    """None when no train stage with ``training_domains`` was found or its domain columns are not in the
    manifest columns the report reads (then roles come from the ingest splits and say so)."""
    from pipeline.manifest import domain_values

    sites: set[str] = set()
    runs, domains = [], []
    for label, stage in stages.items():
        names = stage.training_domains if label.startswith("train") else None
        if names is None:
            continue
        # the run's train config (a dict here: the report does not import the train stage's config model)
        columns = tuple((stage.config or {}).get("domain_columns") or ("domain",))
        if not all(c in frame.columns for c in columns):
            return None
        values = domain_values(frame, columns)
        sites |= set(frame.loc[values.isin([str(d) for d in names]), "site"].astype(str))
        runs.append(label.split(":", 1)[-1].strip())
        domains += [str(d) for d in names]
    if not runs:
        return None
    return Trained(frozenset(sites), tuple(runs), tuple(dict.fromkeys(domains)))


def _role(splits: set[str], site: str = "", trained: Trained | None = None) -> str:
    """A site's role: "training" only where a model trained on it; a train/val site of the ingest without that
    knowledge reads "ingest split train/val" (the ingest's plan, not what the models did)."""
    if trained is not None and site in trained.sites:
        return TRAINING
    if splits & {"train", "val"}:
        split = "/".join(s for s in ("train", "val") if s in splits)
        return f"ingest split {split}" + ("; not trained on" if trained is not None else "")
    if "ood_val" in splits:
        return "validation (OOD)"
    if "test" in splits:
        return "test (OOD)"
    return "/".join(sorted(splits))


TRAINING = "training"


def label_text(frame: Any) -> Any:
    """'0' / '1' / 'unknown' per row (ingest writes the label as a nullable integer)."""
    import pandas as pd

    labels = pd.to_numeric(frame["label"], errors="coerce")
    known = labels.notna()
    out = pd.Series("unknown", index=frame.index, dtype=object)
    out[known] = labels[known].astype(int).astype(str)
    return out


def covid_share(rows: Any) -> float | None:
    """P(COVID) among the labelled rows (None when none is labelled)."""
    labels = label_text(rows)
    known = labels[labels != "unknown"]
    return float((known == "1").mean()) if len(known) else None


def position_gap(rows: Any) -> float | None:
    """P(COVID | supine) - P(COVID | erect) among labelled rows: > 0 means supine goes with COVID (None when
    either position has no labelled image)."""
    position = rows["position"].astype(str)
    supine, erect = covid_share(rows[position == "supine"]), covid_share(rows[position == "erect"])
    return None if supine is None or erect is None else supine - erect


def _roles(frame: Any, trained: Trained | None = None) -> dict[str, str]:
    return {site: _role(set(frame.loc[frame["site"].astype(str) == site, "split"].astype(str)), site, trained)
            for site in _site_order(frame)}


def _pool(roles: dict[str, str], trained: Trained | None) -> tuple[list[str], str]:
    """(the sites the direction is pooled over, how the page names them)."""
    if trained is not None:
        return [s for s, r in roles.items() if r == TRAINING], "the training hospitals"
    return [s for s, r in roles.items() if r.startswith("ingest split")], "the ingest's train/val hospitals"


def direction_sentence(frame: Any, *, trained: Trained | None = None) -> str:
    """How position relates to the label at the training hospitals and, compared with them, at every other
    hospital: computed from the images, never assumed."""
    roles = _roles(frame, trained)
    pool, where = _pool(roles, trained)
    if not pool:
        return f"No site of this ingest is one of {where}, so no position–label direction is compared."
    training = frame[frame["site"].astype(str).isin(pool)]
    pooled = position_gap(training) if len(training) else None
    if pooled is None or abs(pooled) < 1e-9:
        what = "cannot be computed" if pooled is None else "is zero"
        return f"At {where} the position–label direction {what}, so no site is compared with it."
    side = "supine" if pooled > 0 else "erect"
    parts = [f"At {where} (pooled) {side} images are more often {POSITIVE_NAME} "
             f"(P({POSITIVE_NAME} | supine) − P({POSITIVE_NAME} | erect) = {pooled:+.2f})"]
    for site, role in roles.items():
        if site in pool:
            continue
        gap = position_gap(frame[frame["site"].astype(str) == site])
        if gap is None:
            parts.append(f"at {site} ({role}) the direction cannot be computed (a position has no labelled image)")
        elif abs(gap) < 1e-9:
            parts.append(f"at {site} ({role}) position carries no label information ({gap:+.2f})")
        else:
            verb = "agrees with" if (gap > 0) == (pooled > 0) else "reverses"
            parts.append(f"at {site} ({role}) the direction {verb} it ({gap:+.2f})")
    return "; ".join(parts) + "."


def known_levels(rows: Any, column: str) -> list[str]:
    """The known values of ``column`` among labelled rows (unknown spellings and unlabelled rows left out)."""
    if column not in rows:
        return []
    values = attribute_values(rows.loc[label_text(rows) != "unknown"], column)  # unknown spellings read "unknown"
    return sorted(set(values) - {"unknown"})


def level_reason(column: str, levels: list[str]) -> str:
    """Why an association with ``column`` is not measured in a group of images with these known levels."""
    if not levels:
        return f"{column} unknown for every labelled image here"
    return f"{column} has one known level here ({levels[0]}); the rest unknown"


def position_agreement(rows: Any) -> tuple[float | None, str | None]:
    """(share of labelled images whose position agrees with the label, why it is not measured): measured only
    where both supine and erect have labelled images; with one known level the share is just a class share."""
    levels = known_levels(rows, "position")
    if not {"supine", "erect"} <= set(levels):
        return None, level_reason("position", levels)
    known = rows[(rows["position"].astype(str).isin(["erect", "supine"])) & (label_text(rows) != "unknown")]
    return float(((known["position"].astype(str) == "supine") == (label_text(known) == "1")).mean()), None


def counts_table(frame: Any, *, trained: Trained | None = None) -> tuple[Table, dict[str, list[int]]]:
    positions = [p for p in ("erect", "supine", "unknown") if p in set(frame["position"].astype(str))]
    labels = label_text(frame)
    label_keys = ["0", "1"] + (["unknown"] if (labels == "unknown").any() else [])
    names = {"0": LABELS[0], "1": LABELS[1], "unknown": "label unknown"}
    combos = [(p, lab) for p in positions for lab in label_keys]
    table = Table(["site", "role", "n", *[f"{p} · {names[lab]}" for p, lab in combos], f"{POSITIVE_NAME} share",
                   f"supine − erect {POSITIVE_NAME} share", "position agrees with label"],
                  caption="Images per site, position and label",
                  numeric=[False, False, True, *[True] * len(combos), True, True, True])
    series: dict[str, list[int]] = {f"{p} · {names[lab]}": [] for p, lab in combos}
    for site in _site_order(frame):
        rows = frame[frame["site"].astype(str) == site]
        counts = Counter(zip(rows["position"].astype(str), label_text(rows), strict=False))
        agree, why = position_agreement(rows)
        css = "worst" if agree is not None and (agree >= 0.7 or agree <= 0.3) else ""
        table.add([site, _role(set(rows["split"].astype(str)), site, trained), cell(len(rows)),
                   *[cell(counts.get(c, 0)) for c in combos],
                   rate_cell(covid_share(rows), reason="no labelled image"),
                   num_cell(position_gap(rows), digits=2, reason="a position has no labelled image"),
                   rate_cell(agree, css=css, reason=why)])
        for p, lab in combos:
            series[f"{p} · {names[lab]}"].append(counts.get((p, lab), 0))
    table.note = (f"Position agrees with label = share of the labelled images of known position that are "
                  f"{POSITIVE_NAME} and supine, or {NEGATIVE_NAME} and erect: far from 50% means position predicts "
                  "the label at that site (highlighted beyond 70% or 30%); not measured where position has fewer than two known levels. "
                  + _roles_note(trained) + direction_sentence(frame, trained=trained))
    return table, series


def _roles_note(trained: Trained | None) -> str:
    if trained is None:
        return ("Roles: no training run was found, so train/val sites are named by the ingest split (what the "
                "models trained on is unknown). ")
    return (f"Roles: training = a site the models trained on (runs {', '.join(trained.runs)}: domains "
            f"{', '.join(trained.domains)}). ")


def ages_table(frame: Any) -> tuple[Table, dict[str, list[float]]]:
    table = Table(["site", "n with age", "median age", "IQR", "children", "female", "sex unknown"],
                  caption="Age and sex per site", numeric=[False, True, True, False, True, True, True])
    samples: dict[str, list[float]] = {}
    for site in _site_order(frame):
        rows = frame[frame["site"].astype(str) == site]
        # a manifest without an age column has no age: an empty series, not an empty frame
        ages = rows["age_years"].dropna().astype(float) if "age_years" in rows else rows["site"].iloc[0:0].astype(float)
        samples[site] = ages.tolist()
        children, why_children = _known_share(rows, "age_group", "child", ("unknown", "", "nan", "None"))
        female, why_female = _known_share(rows, "sex", "F", ("unknown", "", "nan", "None"))
        sex_unknown = int((~rows["sex"].astype(str).isin(["F", "M", "O"])).sum()) if "sex" in rows else None
        iqr = f"{ages.quantile(0.25):.0f}–{ages.quantile(0.75):.0f}" if len(ages) else None
        table.add([site, cell(len(ages)),
                   num_cell(ages.median() if len(ages) else None, digits=0, reason="no image has an age"),
                   cell(iqr, reason="no image has an age"), rate_cell(children, reason=why_children),
                   rate_cell(female, reason=why_female), cell(sex_unknown, reason="no sex column")])
    table.note = "Children and female: shares of the images whose age group / sex is known."
    return table, samples


def _known_share(rows: Any, column: str, value: str, unknown: tuple[str, ...]) -> tuple[float | None, str | None]:
    """(share of ``value`` among rows whose ``column`` is known, why it is missing)."""
    if column not in rows:
        return None, f"no {column} column in the manifest"
    values = rows[column].astype(str)
    known = values[~values.isin(unknown)]
    if not len(known):
        return None, f"{column.replace('_', ' ')} unknown for every image"
    return float((known == value).mean()), None


def rejects_table(rejects: list[dict[str, str]] | None, summary: IngestSummary | None = None) -> Table:
    """Reject counts per reason (file paths are not shown: hospital file names can carry patient names); from
    rejects.csv, else from summary.json's ``rejects_by_reason``."""
    table = Table(["reason", "files"], caption="Files ingest rejected, by reason", numeric=[False, True])
    if rejects is not None:
        counts = Counter(str(r.get("reason", "unknown")) for r in rejects).most_common()
    else:
        by_reason = summary.rejects_by_reason if summary is not None else {}
        counts = sorted(by_reason.items(), key=lambda kv: -kv[1])
    for reason, n in counts:
        table.add([reason, cell(n)])
    return table


def _summary_warnings(summary: IngestSummary | None) -> list[str]:
    """The confounding warnings ingest printed, each once."""
    return list(dict.fromkeys(summary.confounding.warnings)) if summary is not None else []


def _interval(value: Any, interval: Any, digits: int = 2) -> Cell:
    bounds = list(interval) if isinstance(interval, (list, tuple)) else None
    return ci_cell(value, bounds, digits=digits)


def _scope_rows(frame: Any, scope: Any) -> Any:
    """The manifest rows of a confounding scope ("all" or "site=NAME"; None for a scope it cannot resolve)."""
    text = str(scope)
    if text == "all":
        return frame
    column, _, value = text.partition("=")
    if not value or column not in frame:
        return None
    return frame[frame[column].astype(str) == value]


FACTOR_KEYS = ("auroc", "cramers_v", "chi2_p_value", "accuracy", "chance", "lift")


def _one_level(frame: Any, factor: Any, scope: Any) -> str | None:
    """Why a factor's association in a scope is not a measurement: fewer than two known levels with a labelled
    image there (the rest "unknown"), so it measures which images lack the field, not the field."""
    if frame is None or str(factor) not in frame:
        return None
    rows = _scope_rows(frame, scope)
    if rows is None:
        return None
    levels = known_levels(rows, str(factor))
    if len(levels) >= 2:
        return None
    return level_reason(str(factor), levels)


def factors_table(summary: IngestSummary | None, frame: Any = None) -> Table:
    """How well each metadata factor alone predicts the label (ingest's confounding check), with its n; with the
    manifest ``frame``, a factor with fewer than two known levels in a scope is "not measured" there."""
    table = Table(["factor", "scope", "n (classes)", "AUROC [95% CI]", "Cramér's V [95% CI]", "p (chi²)",
                   "accuracy from the factor alone", "always-majority", "lift"],
                  caption="What predicts the label without looking at a pixel", collapsed=False,
                  numeric=[False, False, True, True, True, True, True, True, True])
    threshold = summary.confounding.warning_lift if summary is not None else None
    for f in summary.confounding.factors if summary is not None else ():
        values, reasons = {k: getattr(f, k) for k in FACTOR_KEYS}, f.not_measured
        one_level = _one_level(frame, f.factor, f.scope)
        if one_level:  # the numbers ingest wrote measure missingness here: never shown, never highlighted
            values, reasons = dict.fromkeys(FACTOR_KEYS), dict.fromkeys(FACTOR_KEYS, one_level)
        lift = values["lift"]
        css = "worst" if is_number(lift) and is_number(threshold) and lift >= threshold else ""
        n_cell = Cell(f"{f.n:,} ({f.n_pos:,} / {f.n_neg:,})", float(f.n))
        if f.small_n:
            n_cell = Cell(f"{n_cell.text} (small)", n_cell.sort, "flag")
        auroc, cramer = values["auroc"], values["cramers_v"]
        table.add([cell(f.factor), cell(f.scope), n_cell,
                   _interval(auroc, f.auroc_ci95) if is_number(auroc) else cell(None, reason=reasons.get("auroc")),
                   _interval(cramer, f.cramers_v_ci95) if is_number(cramer)
                   else cell(None, reason=reasons.get("cramers_v")),
                   p_cell(values["chi2_p_value"], reason=reasons.get("chi2_p_value")),
                   rate_cell(values["accuracy"], reason=reasons.get("accuracy")),
                   rate_cell(values["chance"], reason=reasons.get("chance")),
                   num_cell(lift, digits=2, css=css, reason=reasons.get("lift"))])
    table.note = (f"AUROC of the factor alone (its values ranked by their {POSITIVE_NAME} share), Cramér's V of the factor × "
                  "label table, and the accuracy of predicting each value's majority label vs always predicting the "
                  "overall majority label (lift = the difference)"
                  + (f"; lift >= {threshold} is highlighted" if threshold is not None else "")
                  + f". n counts labelled images ({POSITIVE_NAME} / {NEGATIVE_NAME}); (small): fewer than ingest's min_group_size.")
    return table


def ingest_table(summary: IngestSummary | None) -> Table:
    """What ingest kept and left out, from summary.json: nothing dropped silently."""
    table = Table(["what", "count", "detail"], caption="What ingest kept and left out",
                  numeric=[False, True, False])
    if summary is None:
        return table
    table.add(["images kept", cell(summary.n_images), ""])
    table.add(["files rejected", cell(summary.n_rejected),
               ", ".join(f"{k} {v}" for k, v in summary.rejects_by_reason.items()) or "none"])
    table.add(["images without a label (kept, left out of every accuracy)", cell(summary.n_unlabelled), ""])
    without = summary.metadata_rows_without_image
    examples = [Path(e).name for e in without.examples][:5]  # base names only: folders can name patients
    table.add(["metadata CSV rows without an image", cell(without.n),
               ("e.g. " + ", ".join(examples)) if examples else ""])
    table.add(["files with conflicting metadata rows (rejected)", cell(summary.conflicting_metadata_rows), ""])
    return table


def attributes_table(summary: IngestSummary | None, frame: Any) -> Table:
    """The shortcut attributes ingest analysed, each with how many images have it unknown."""
    table = Table(["attribute", "images with it unknown"], caption="Shortcut attributes analysed",
                  numeric=[False, True])
    if summary is None:
        return table
    per_site = summary.confounding.p_label_given_attribute_per_site
    for name in summary.shortcut_attributes or summary.confounding.shortcut_attributes:
        unknown = None
        sites = per_site.get(name)
        if sites is not None:
            unknown = sum(values["unknown"].n for values in sites.values() if "unknown" in values)
        elif frame is not None and name in frame:
            unknown = int((frame[name].astype(str) == "unknown").sum())
        table.add([name, cell(unknown, reason="not counted for this attribute")])
    return table


def build_cohort(inputs: ReportInputs, out: Path) -> dict[str, Any]:
    frame = inputs.cohort
    if frame is None or not len(frame):
        reason = "No ingest manifest was found, so the cohort cannot be described (pass --ingest DIR)."
        return {"available": False, "reason": reason}
    trained = trained_sites(frame, inputs.stages)
    counts, series = counts_table(frame, trained=trained)
    sites = _site_order(frame)
    figures.grouped_bars(out / "fig_cohort_counts.png", groups=sites, series=series, ylabel="images", ylim=None,
                         width_in=max(7.5, 1.3 * len(sites) + 4))
    ages, samples = ages_table(frame)
    age_figure = None
    if any(samples.values()):
        figures.distributions(out / "fig_cohort_ages.png", samples=samples, ylabel="age (years)")
        age_figure = {"src": "fig_cohort_ages.png", "alt": "age per site", "caption": "Age distribution per site."}
    splits = Counter(frame["split"].astype(str))
    roles = _roles(frame, trained)
    held_out = [s for s, r in roles.items() if r in ("validation (OOD)", "test (OOD)")]
    whole = [s for s in held_out if set(frame.loc[frame["site"].astype(str) == s, "split"].astype(str))
             <= {"ood_val", "test"}]
    lines = [f"{len(frame):,} images from {len(sites)} sites after ingest ("
             + ", ".join(f"{n:,} {s}" for s, n in sorted(splits.items(), key=lambda kv: SPLIT_ORDER.get(kv[0], 3)))
             + "). Ingest splits by patient inside its train/val sites"
             + (f"; the held-out hospitals ({', '.join(whole)}) have no training or validation image." if whole
                else ".")]
    attributes = attributes_table(inputs.ingest_summary, frame)
    return {
        "available": True,
        "lines": lines,
        "warnings": _summary_warnings(inputs.ingest_summary),
        "ingest": ingest_table(inputs.ingest_summary),
        "attributes": attributes,
        "counts": counts,
        "counts_figure": {"src": "fig_cohort_counts.png", "alt": "images per site, position and label",
                          "caption": "Images per site by position and label. "
                                     + direction_sentence(frame, trained=trained)},
        "confounding": factors_table(inputs.ingest_summary, frame),
        "ages": ages,
        "age_figure": age_figure,
        "rejects": rejects_table(inputs.rejects, inputs.ingest_summary),
        "rejects_text": ("No rejects file was found." if inputs.rejects is None and inputs.ingest_summary is None
                         else "No file was rejected."),
    }
