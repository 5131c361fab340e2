"""The report's "Sweep results" section: the tables of `cxr-fishr results SWEEP_DIR` (its results.json), one per
selection rule (rows: algorithms; columns: test hospitals, average, worst), and the hparams each rule chose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.protocol.selection import is_upper_bound
from pipeline.report.tables import Cell, Table, not_measured
from pipeline.results.tables import ResultsTables, cell_text, constant_note


def _acc_cell(mean: Any, reason: str | None) -> Cell:
    if mean is None:
        return Cell(not_measured(reason), None, "muted nm")
    return Cell(f"{mean:.1f}%", float(mean))


def _hospital_cell(cell: dict[str, Any]) -> Cell:
    """A test-hospital cell as results.md writes it (n seeds; constant with the majority baseline)."""
    if cell["mean"] is None:
        return Cell(not_measured(cell.get("not_measured")), None, "muted nm")
    css = "muted" if cell.get("constant_seeds") else ""  # a class balance, not a model score
    return Cell(cell_text(cell, unit="%"), float(cell["mean"]), css)


def _rule_tables(data: dict[str, Any], rule: str) -> tuple[Table, Table]:
    hospitals = data["hospitals"]
    title = f"{rule} ({data['oracle_label']})" if is_upper_bound(rule) else rule
    tables = ResultsTables(hospitals=hospitals, algorithms=data["algorithms"], rules=data["rules"],
                           cells=data["cells"], summary=data["summary"])
    note = constant_note(tables, rule)
    scores = Table(columns=["Algorithm", *hospitals, "Average", "Worst"], numeric=[False] + [True] * (len(hospitals) + 2),
                   caption=f"Selection: {title}. Test-hospital accuracy, mean ± sd over n seeds (no sd for n=1)."
                   + (f" {note}" if note else ""))
    chosen = Table(columns=["Algorithm", "Test hospital", "Draw", "Seeds", "Hparams"], collapsed=True,
                   caption=f"Hparams chosen under {rule}")
    for algorithm in data["algorithms"]:
        row = data["cells"][rule][algorithm]
        summary = data["summary"][rule][algorithm]
        worst = summary.get("worst")
        scores.add([algorithm, *(_hospital_cell(row[h]) for h in hospitals),
                    _acc_cell(summary.get("average"), summary.get("not_measured")),
                    _acc_cell(worst, summary.get("not_measured")) if worst is None
                    else Cell(f"{worst:.1f}% ({summary['worst_hospital']})", float(worst), "worst")])
        for hospital in hospitals:
            c = row[hospital]
            hparams = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in sorted((c["hparams"] or {}).items()))
            chosen.add([algorithm, hospital, c["draw"], c["n_seeds"], hparams or not_measured(c.get("not_measured"))])
    return scores, chosen


def build_results(results_dir: str | Path | None, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """{available, reason, tables: [(scores, chosen) per rule], source}; absent (with why) without results.json.
    ``data``: results_dir's results.json already parsed (read here when None)."""
    if results_dir is None:
        return {"available": False, "reason": "no --results given"}
    path = Path(results_dir) / "results.json"
    if data is None:
        if not path.is_file():
            return {"available": False, "reason": f"{path} not found: run `cxr-fishr results {results_dir}` first."}
        data = json.loads(path.read_text(encoding="utf-8"))
    return {"available": True, "source": str(path),
            "tables": [_rule_tables(data, rule) for rule in data["rules"]]}
