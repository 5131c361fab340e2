"""Sortable HTML tables as plain data: the template renders them, a small inline script sorts them.

A :class:`Cell` carries its display text and a sort key (numbers sort as numbers, missing values last), so the
rendering code never parses formatted text back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.artefacts.seeds import SeedSpread

NOT_MEASURED = "not measured"
MISSING = NOT_MEASURED  # the bare phrase; every formatter below appends the reason in brackets
ABSENT = "absent from the results"  # the reason when a stage wrote no value and no ``not_measured`` reason
NOT_FINITE = "not a finite number in the results"


def not_measured(reason: str | None = None, value: Any = None) -> str:
    """``not measured (<reason>)``: a missing number is never shown as 0 or as a bare dash.

    Without a ``reason``, a NaN/inf ``value`` reads "not a finite number in the results", anything else "absent
    from the results".
    """
    if not reason:
        reason = NOT_FINITE if isinstance(value, float) and not math.isfinite(value) else ABSENT
    return f"{NOT_MEASURED} ({reason})"


def reason_of(block: Any, key: str) -> str | None:
    """The reason a stage gave for a null metric (``block.not_measured[key]``, typed or as a dict), or None."""
    reasons = block.get("not_measured") if isinstance(block, dict) else getattr(block, "not_measured", None)
    value = reasons.get(key) if isinstance(reasons, dict) else None
    return str(value) if value else None


@dataclass(frozen=True)
class Cell:
    text: str
    sort: float | str | None = None
    css: str = ""  # e.g. "worst", "best", "muted": styled by the template's CSS
    title: str = ""  # tooltip: the protocol (selection rule, split, n) behind a number


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str = ""
    note: str = ""
    numeric: list[bool] = field(default_factory=list)  # right-align numeric columns
    collapsed: bool = False  # long detail tables render inside a closed <details>

    def __post_init__(self) -> None:
        if not self.numeric:
            self.numeric = [False] * len(self.columns)

    def add(self, cells: Sequence[Cell | str | float | int | None]) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"table row has {len(cells)} cells, the table has {len(self.columns)} columns")
        self.rows.append([c if isinstance(c, Cell) else cell(c) for c in cells])

    @property
    def empty(self) -> bool:
        return not self.rows


ESTIMATED = "estimated"


def mark_estimated(c: Cell, estimated: bool, what: str = ESTIMATED) -> Cell:
    """``c`` with " (estimated)" after a measured number when it rests on estimated lung masks; a "not measured"
    cell (no sort key) is returned unchanged."""
    if not estimated or c.sort is None or not isinstance(c.sort, float):
        return c
    return Cell(f"{c.text} ({what})", c.sort, c.css, c.title)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _missing_cell(value: Any, reason: str | None, css: str, title: str) -> Cell:
    # "nm" lets the reason wrap inside its column instead of widening the whole table
    return Cell(not_measured(reason, value), None, f"{css or 'muted'} nm", title)


def cell(value: Any, *, css: str = "", title: str = "", reason: str | None = None) -> Cell:
    """A cell for a plain value: numbers keep their sort key, None/NaN read "not measured (reason)", sort last."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return _missing_cell(value, reason, css, title)
    if is_number(value):
        text = f"{value:,}" if isinstance(value, int) else f"{value:.3g}"
        return Cell(text, float(value), css, title)
    return Cell(str(value), str(value).lower(), css, title)


def fmt_rate(value: Any, digits: int = 1, *, reason: str | None = None) -> str:
    """A proportion in [0, 1] as a percentage ("81.2%"); "not measured (reason)" when missing."""
    return f"{100 * float(value):.{digits}f}%" if is_number(value) else not_measured(reason, value)


def fmt_num(value: Any, digits: int = 3, *, reason: str | None = None) -> str:
    return f"{float(value):.{digits}f}" if is_number(value) else not_measured(reason, value)


def rate_cell(value: Any, *, css: str = "", title: str = "", reason: str | None = None) -> Cell:
    if not is_number(value):
        return _missing_cell(value, reason, css, title)
    return Cell(fmt_rate(value), float(value), css, title)


def num_cell(value: Any, *, digits: int = 3, css: str = "", title: str = "", reason: str | None = None) -> Cell:
    if not is_number(value):
        return _missing_cell(value, reason, css, title)
    return Cell(fmt_num(value, digits), float(value), css, title)


def p_value_text(value: float) -> str:
    """A p-value as text: ``0.003``, or ``<0.001`` (a test never shows that p is exactly 0)."""
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def p_cell(value: Any, *, reason: str | None = None) -> Cell:
    if not is_number(value):
        return _missing_cell(value, reason, "", "")
    return Cell(p_value_text(float(value)), float(value))


def ci_cell(value: Any, interval: Iterable[Any] | None, *, digits: int = 3, css: str = "", title: str = "",
            reason: str | None = None) -> Cell:
    """``0.861 [0.80, 0.91]``: a point estimate with its 95% interval (the interval is omitted when absent)."""
    if not is_number(value):
        return _missing_cell(value, reason, css, title)
    bounds = list(interval) if interval is not None else []
    text = fmt_num(value, digits)
    if len(bounds) == 2 and all(is_number(b) for b in bounds):
        text += f" [{fmt_num(bounds[0], 2)}, {fmt_num(bounds[1], 2)}]"
    return Cell(text, float(value), css, title)


def mean_std_text(mean: Any, std: Any, *, percent: bool = True, runs: int | None = None,
                  reason: str | None = None) -> str:
    """``52.1% ± 4.0``: a mean and sample standard deviation over seeds already aggregated by
    :class:`~pipeline.artefacts.seeds.SeedSpread` (evaluate's aggregates, the headline), in its format; the std is
    left out when absent, zero or for one run (``runs`` = 1). No mean: "not measured (reason)"."""
    if not is_number(mean):
        return not_measured(reason, mean)
    sd = float(std) if is_number(std) and (runs is None or runs > 1) else None
    # only the two numbers travel here, not the values they were computed from
    return SeedSpread(values=(), mean=float(mean), sd=sd, n=runs if runs is not None else 2 if sd else 1
                      ).text(percent=percent)
