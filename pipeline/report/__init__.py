"""`cxr-fishr report`: one self-contained index.html (inline CSS and script, figures as PNG files beside it).

Python API::

    from pipeline.report import run
    result = run(evaluate_dir="runs/eval", audit_dir="runs/audit", out="reports/demo")
    result.index, result.missing, result.headline
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import DataError

if TYPE_CHECKING:
    from pipeline.artefacts.results import ResultsFile
    from pipeline.report.loading import ReportInputs


@dataclass
class ReportResult:
    out: Path
    index: Path
    missing: list[str] = field(default_factory=list)
    headline: dict[str, Any] = field(default_factory=dict)  # per algorithm (pipeline.report.headline)
    figures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # sections about different ingests (pipeline.report.sources)


def render_html(context: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.report", "templates"),
        autoescape=True,  # every value from stage outputs is escaped: names, configs and notes are data, not HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    return env.get_template("index.html.j2").render(**context)


def run(
    *,
    evaluate_dir: str | Path | None,
    audit_dir: str | Path | None,
    out: str | Path,
    ingest_dir: str | Path | None = None,
    title: str | None = None,
    results_dir: str | Path | None = None,
) -> ReportResult:
    """Render the report from whatever subset of stage outputs exists; what is missing is said in the page."""
    from pipeline.report.loading import load_inputs
    from pipeline.report.sources import check_paths, compare_ingests, ingest_lines, section_ingests
    from pipeline.stage import StageRecord, write_text_atomic

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"report: --out must be a directory, got the file {str(out)!r}. Choose another path.")
    # explicit paths: wrong ones are exit 2; the loaded results.json is passed on so that it is read once
    results = check_paths(results_dir=results_dir, ingest_dir=ingest_dir)
    inputs = load_inputs(evaluate_dir=evaluate_dir, audit_dir=audit_dir, ingest_dir=ingest_dir)
    ingests = section_ingests(inputs, results_dir, results)
    warnings = compare_ingests(ingests)  # refuses sections about different test hospitals before writing
    ingest_text = ingest_lines(ingests)
    with StageRecord("report", out, config={"title": title}, inputs=_stage_inputs(inputs, results_dir)) as record:
        for stale in out.glob("fig_*.png"):  # a figure not drawn this time must not linger from an earlier report
            stale.unlink()
        context = _sections(inputs, out, results_dir=results_dir, results=results)
        context.update({"title": title or "Does the model look at the lungs?", "cohort_warnings": warnings,
                        "ingests": ingest_text})
        index = out / "index.html"
        write_text_atomic(index, render_html(context))
        figures = sorted(p.name for p in out.glob("fig_*.png"))
        record.extra.update({"missing": inputs.missing, "figures": figures, "warnings": warnings,
                             "ingests": ingest_text})
    return ReportResult(out=out, index=index, missing=inputs.missing, headline=context["summary"]["numbers"],
                        figures=figures, warnings=warnings)


def _stage_inputs(inputs: ReportInputs, results_dir: str | Path | None) -> dict[str, Path | str]:
    """The report's stage.json inputs: each stage directory it read (those it was given or found)."""
    return {k: v for k, v in (("evaluate", inputs.evaluate_dir), ("audit", inputs.audit_dir),
                              ("ingest", inputs.ingest_dir), ("results", results_dir)) if v is not None}


def _sections(inputs: ReportInputs, out: Path, *, results_dir: str | Path | None, results: ResultsFile | None
              ) -> dict[str, Any]:
    """The template's context for every section (figures are written into ``out`` on the way)."""
    from pipeline import __version__
    from pipeline.report.answers import build_summary
    from pipeline.report.cohort import build_cohort
    from pipeline.report.landscape import build_landscape
    from pipeline.report.provenance import build_provenance
    from pipeline.report.results import build_results
    from pipeline.report.shortcut_audit import build_audit
    from pipeline.report.site_metrics import build_evaluation

    return {
        "subtitle": _subtitle(inputs),
        "summary": build_summary(inputs.metrics, inputs.audit),
        "cohort": build_cohort(inputs, out),
        "evaluation": build_evaluation(inputs.metrics, out, inputs.cohort),
        "audit": build_audit(inputs.audit, inputs.audit_dir, out, inputs.ingest_dir, inputs.metrics,
                             synthetic=inputs.synth_dir is not None),
        "landscape": build_landscape(inputs.audit, out),
        "provenance": build_provenance(inputs),
        "results": build_results(results_dir, results),  # `cxr-fishr results` tables, shown when given
        "missing": inputs.missing,
        "version": __version__,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _subtitle(inputs: ReportInputs) -> str:
    parts = []
    if inputs.metrics is not None:
        n = len(inputs.metrics.models)
        parts.append(f"{n} evaluated model checkpoint{'s' if n != 1 else ''}")
        sites = inputs.metrics.sites
        if sites:
            parts.append(f"{inputs.metrics.split} site{'s' if len(sites) > 1 else ''}: " + ", ".join(sites))
    if inputs.cohort is not None:
        parts.append(f"{len(inputs.cohort):,} images")
    return " · ".join(parts) or "Chest X-ray shortcut audit"


__all__ = ["ReportResult", "run", "render_html"]
