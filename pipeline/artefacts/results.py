"""``SWEEP/results.json`` (written by `cxr-fishr results`, pipeline/results/tables.py; read by the report's "Sweep
results" section): per selection rule, per algorithm and test hospital, the test accuracy (%) of the hparam draw the
rule chose, as mean and sample sd (n - 1) over seeds, with the worst hospital and the average.

Accuracies are percentages in [0, 100]; a value that cannot be computed is None with the reason beside it
(``not_measured``, ``sd_not_measured``, ``majority_baseline_not_measured``). The text of a cell and of the
constant-predictor note live here, on the models, so that results.md and the report print one wording.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pipeline.artefacts.base import Artefact, Block
from pipeline.protocol.selection import ORACLE

NOT_MEASURED = "not measured"
METRIC = "test-hospital accuracy (%), mean and sample sd (n - 1) over n_seeds (sd null for 1 seed)"
CONSTANT = ("constant_seeds: seeds whose selected checkpoint predicts one class at the test hospital; "
            "majority_baseline: that hospital's always-majority accuracy (%)")


class ResultCell(Block):
    """One rule x algorithm x test hospital: the chosen draw's test accuracy (%) over its seeds (None + reason when
    no draw was eligible or no accuracy was logged)."""

    OMIT_WHEN_UNSET: ClassVar[frozenset[str]] = frozenset(
        {"selection_score", "sd_not_measured", "majority_baseline_not_measured", "not_measured"})

    mean: float | None  # %
    sd: float | None  # %, sample sd over seeds; None for one seed (sd_not_measured says so)
    n_seeds: int
    draw: int | None  # the hparam draw the rule chose (None: no eligible draw)
    hparams: dict[str, Any] | None  # that draw's hparams as sweep.json records them
    selection_score: float | None = None  # the draw's mean selection score in [0, 1]; present when a draw was chosen
    constant_seeds: int  # seeds whose selected checkpoint predicts one class at the test hospital
    majority_baseline: float | None  # % always-majority accuracy of the hospital (set when constant_seeds > 0)
    sd_not_measured: str | None = None
    majority_baseline_not_measured: str | None = None
    not_measured: str | None = None

    def text(self, *, unit: str = "", pm: str = "±") -> str:
        """The cell as text: "70.0 ± 10.0 (n=2)", "92.3 (n=1, constant 1/1; majority 92.3)" (a checkpoint predicting
        one class at the test hospital, next to that hospital's always-majority accuracy), or "not measured".
        ``unit``: appended to numbers ("%" in the report); ``pm``: the plus-minus sign."""
        if self.mean is None:
            return NOT_MEASURED
        text = f"{self.mean:.1f}{unit}" + ("" if self.sd is None else f" {pm} {self.sd:.1f}")
        note = f"n={self.n_seeds}"
        if self.constant_seeds:
            baseline = self.majority_baseline
            note += (f", constant {self.constant_seeds}/{self.n_seeds}; majority "
                     + (NOT_MEASURED if baseline is None else f"{baseline:.1f}{unit}"))
        return f"{text} ({note})"


class ResultSummary(Block):
    """One rule x algorithm over the test hospitals: the average and the worst hospital's accuracy (%), or None with
    the hospitals not measured."""

    OMIT_WHEN_UNSET: ClassVar[frozenset[str]] = frozenset({"constant_hospitals", "not_measured"})

    average: float | None
    worst: float | None
    worst_hospital: str | None
    # hospitals whose cell holds constant seeds (averaged as measured, but named); present when measured
    constant_hospitals: list[str] | None = None
    not_measured: str | None = None


class ResultsFile(Artefact):
    """SWEEP/results.json: ``cells[rule][algorithm][hospital]`` and ``summary[rule][algorithm]``."""

    FILENAME: ClassVar[str] = "results.json"
    STAGE: ClassVar[str] = "results"
    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = SCHEMA_VERSION
    hospitals: list[str]  # the test hospitals (leave-one-hospital-out) and/or "test" (the ingest's test split)
    algorithms: list[str]
    rules: list[str]  # in table order (pipeline/protocol/selection.py)
    cells: dict[str, dict[str, dict[str, ResultCell]]] = {}
    summary: dict[str, dict[str, ResultSummary]] = {}
    sweeps: list[str] = []  # the sweep.json files read
    notes: list[str] = []  # e.g. run folders read from an older sweep.json's paths
    # hospital key -> the name tables print: "test" (a plain sweep's test split) -> its ingest's test sites,
    # e.g. "harbour (test)" ("test" when the ingest could not be read, with a note); other keys print as they are
    hospital_labels: dict[str, str] = {}
    oracle_label: str = ORACLE.note
    metric: str = METRIC
    constant: str = CONSTANT

    def label(self, hospital: str) -> str:
        """The name a hospital column prints under (``hospital_labels``, else the key itself)."""
        return self.hospital_labels.get(hospital, hospital)

    def cell(self, rule: str, algorithm: str, hospital: str) -> ResultCell:
        return self.cells[rule][algorithm][hospital]

    def constant_note(self, rule: str) -> str | None:
        """A sentence for the cells of ``rule`` whose selected checkpoint predicts one class at the test hospital."""
        flagged = [f"{a} at {self.label(h)}" for a in self.algorithms for h in self.hospitals
                   if self.cell(rule, a, h).constant_seeds]
        if not flagged:
            return None
        return (f"Constant: the selected checkpoint predicts one class at the test hospital ({'; '.join(flagged)}): "
                "its accuracy is that hospital's class balance, not a measurement of the model; the hospital's "
                "always-majority accuracy stands beside it. Averages and worst include these cells.")
