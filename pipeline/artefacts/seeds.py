"""``SeedSpread``: the one estimator of "mean ± sd over seeds" (evaluate's aggregates, the report, results).

The spread is the SAMPLE standard deviation (ddof = 1, divisor n - 1): the seeds are a sample of the training
randomness, not the whole population of it, and the population formula (divisor n) understates the spread most
where it matters, with 2-5 seeds (two seeds 0.50 and 0.54: sample sd 0.028, population sd 0.020). With fewer than
two values there is no spread: ``sd`` is None and ``not_measured`` says why (never 0.0, which would claim the seeds
agree).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

ONE_RUN = "1 run (n=1): no spread"


class SeedSpread(BaseModel):
    """Mean and sample sd of the finite values among ``values`` (None/NaN dropped, ``n`` counts the kept ones)."""

    model_config = ConfigDict(frozen=True)

    values: tuple[float, ...]
    mean: float | None
    sd: float | None
    n: int
    not_measured: str | None = None  # why ``sd`` (or ``mean``) is None

    @classmethod
    def from_values(cls, values: Iterable[float | None]) -> SeedSpread:
        kept = tuple(float(v) for v in values if v is not None and math.isfinite(float(v)))
        n = len(kept)
        if n == 0:
            return cls(values=kept, mean=None, sd=None, n=0, not_measured="no run measured it")
        mean = math.fsum(kept) / n
        if n == 1:
            return cls(values=kept, mean=mean, sd=None, n=1, not_measured=ONE_RUN)
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in kept) / (n - 1))
        return cls(values=kept, mean=mean, sd=sd, n=n)

    def block(self) -> dict[str, Any] | None:
        """The metrics.json shape {mean, std, n[, not_measured]} (artefacts/metrics.MeanSpreadBlock); None when no
        run measured it."""
        if self.mean is None:
            return None
        if self.sd is None:
            return {"mean": self.mean, "std": None, "n": self.n, "not_measured": {"std": self.not_measured}}
        return {"mean": self.mean, "std": self.sd, "n": self.n}

    def text(self, *, percent: bool = True, with_n: bool = False) -> str:
        """The report's format (pipeline/report/tables.py mean_std_text): ``52.1% ± 4.0`` (``percent``: fractions
        printed x100 with one decimal), ``0.521 ± 0.040`` otherwise; the spread is left out with one value or a
        zero spread; ``with_n`` appends `` (n=3)``. No value: ``not measured (<reason>)``."""
        if self.mean is None:
            return f"not measured ({self.not_measured})"
        scale = 100.0 if percent else 1.0
        text = f"{scale * self.mean:.1f}%" if percent else f"{self.mean:.3f}"
        if self.sd is not None and self.sd > 0:
            text += f" ± {scale * self.sd:.1f}" if percent else f" ± {self.sd:.3f}"
        return text + (f" (n={self.n})" if with_n else "")
