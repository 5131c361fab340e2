"""The report's "Sweep results" section: the tables of `cxr-fishr results SWEEP_DIR` (its results.json, read as
pipeline/artefacts/results.py ResultsFile), one per selection rule (rows: algorithms; columns: test hospitals, average,
worst), and the hparams each rule chose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.artefacts.results import ResultCell, ResultsFile
from pipeline.protocol.selection import is_upper_bound
from pipeline.report.tables import Cell, Table, not_measured


def _acc_cell(mean: float | None, reason: str | None) -> Cell:
    if mean is None:
        return Cell(not_measured(reason), None, "muted nm")
    return Cell(f"{mean:.1f}%", float(mean))


def _hospital_cell(cell: ResultCell) -> Cell:
    """A test-hospital cell as results.md writes it (n seeds; constant with the majority baseline)."""
    if cell.mean is None:
        return Cell(not_measured(cell.not_measured), None, "muted nm")
    css = "muted" if cell.constant_seeds else ""  # a class balance, not a model score
    return Cell(cell.text(unit="%"), float(cell.mean), css)


def _rule_tables(results: ResultsFile, rule: str) -> tuple[Table, Table]:
    hospitals = results.hospitals
    title = f"{rule} ({results.oracle_label})" if is_upper_bound(rule) else rule
    note = results.constant_note(rule)
    scores = Table(columns=["Algorithm", *map(results.label, hospitals), "Average", "Worst"],
                   numeric=[False] + [True] * (len(hospitals) + 2),
                   caption=f"Selection: {title}. Test-hospital accuracy, mean ± sd over n seeds (no sd for n=1)."
                   + (f" {note}" if note else ""))
    chosen = Table(columns=["Algorithm", "Test hospital", "Draw", "Seeds", "Hparams"], collapsed=True,
                   caption=f"Hparams chosen under {rule}")
    for algorithm in results.algorithms:
        row = results.cells[rule][algorithm]
        summary = results.summary[rule][algorithm]
        worst = summary.worst
        scores.add([algorithm, *(_hospital_cell(row[h]) for h in hospitals),
                    _acc_cell(summary.average, summary.not_measured),
                    _acc_cell(worst, summary.not_measured) if worst is None
                    else Cell(f"{worst:.1f}% ({results.label(summary.worst_hospital)})", float(worst), "worst")])
        for hospital in hospitals:
            c = row[hospital]
            hparams = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in sorted((c.hparams or {}).items()))
            chosen.add([algorithm, results.label(hospital), c.draw, c.n_seeds,
                        hparams or not_measured(c.not_measured)])
    return scores, chosen


def build_results(results_dir: str | Path | None, results: ResultsFile | None = None) -> dict[str, Any]:
    """{available, reason, tables: [(scores, chosen) per rule], source, notes (results.json's, as results.md writes
    them)}; absent (with why) without results.json.
    ``results``: results_dir's results.json already loaded (loaded here when None; a broken file is a DataError)."""
    if results_dir is None:
        return {"available": False, "reason": "no --results given"}
    path = ResultsFile.path_in(results_dir)
    if results is None:
        if not path.is_file():
            return {"available": False, "reason": f"{path} not found: run `cxr-fishr results {results_dir}` first."}
        results = ResultsFile.load(path)
    return {"available": True, "source": str(path), "notes": results.notes,
            "tables": [_rule_tables(results, rule) for rule in results.rules]}
