"""Typed hparams declared beside each algorithm, with DomainBed's names and random-search distributions.

    @dataclass(frozen=True)
    class FishrHParams(HParams):
        lam: float = hparam(1000.0, name="lambda", search=lambda r: 10 ** r.uniform(1, 4))

``HParams.from_mapping({"lambda": 100, "lr": 1e-4})`` accepts DomainBed's names (unknown names raise a
ConfigError listing the valid ones); ``HParams.sample(seed)`` draws every hparam from its own stream
(``seed_hash(seed, name)``, as DomainBed does) so adding an hparam never shifts the others.

Each hparam declares its valid range beside it (``hparam(..., gt=0, why=...)``) and each hparams class the number
of training domains its penalty needs (``MIN_DOMAINS``): a value that makes the algorithm's statistic undefined
(a covariance over one sample) or degenerate (a penalty identically 0, i.e. silently ERM) is refused up front by
``check_values`` (config time) and ``validate(num_domains=...)`` (when the algorithm is built), with a ConfigError
such as ``fishr: hparam batch_size must be >= 2 (the per-domain gradient variance is undefined for 1 sample), got 1``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from pipeline.errors import ConfigError
from pipeline.seeding import seed_hash

H = TypeVar("H", bound="HParams")


@dataclass(frozen=True)
class Bound:
    """The valid range of one hparam (any of the four limits may be None) and why a value outside is refused."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    why: str = ""

    def holds(self, value: float) -> bool:
        """False for NaN too (every comparison with NaN is False)."""
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def text(self) -> str:
        """'>= 2', '> 0', 'in [0, 1)', ... as the error message says it."""
        low = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None
        high = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>=' if low[0] == '[' else '>'} {low[1:]}"
        if high:
            return f"{'<=' if high[-1] == ']' else '<'} {high[:-1]}"
        return "any value"


def _num(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


def hparam(default: Any, *, search: Callable[[np.random.RandomState], Any] | None = None, name: str | None = None,
           ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
           why: str = ""):
    """A hparam field: its default, its random-search distribution, its DomainBed name if not the field's, and its
    valid range (``ge``/``gt``/``le``/``lt``) with ``why`` a value outside makes the algorithm degenerate."""
    bound = Bound(ge=ge, gt=gt, le=le, lt=lt, why=why) if (ge, gt, le, lt) != (None,) * 4 else None
    return field(default=default, metadata={"search": search, "name": name, "bound": bound})


def _external_name(f: dataclasses.Field) -> str:
    return f.metadata.get("name") or f.name


def _convert(f: dataclasses.Field, key: str, value: Any, algorithm: str) -> Any:
    """``value`` as the field's type; an int hparam given a fraction (1.5) is refused rather than truncated."""
    kind = type(f.default)
    if kind is bool:  # bool("false") and bool(0.5) are True: a switch takes YAML's true/false only
        if not isinstance(value, bool):
            raise ConfigError(f"train: hparam {key} must be true or false, got {value!r} ({algorithm}).")
        return value
    if kind not in (int, float):
        return value
    try:
        converted = kind(value)
        if kind is int and not isinstance(value, str) and float(value) != converted:
            raise ValueError("not a whole number")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"train: hparam {key} must be {kind.__name__}, got {value!r} ({algorithm}).") from exc
    return converted


@dataclass(frozen=True)
class HParams:
    """Hparams every algorithm has (DomainBed's image defaults and search ranges)."""

    # The number of training domains below which the algorithm's penalty is identically 0 (or undefined).
    MIN_DOMAINS: ClassVar[int] = 1
    MIN_DOMAINS_WHY: ClassVar[str] = ""

    lr: float = hparam(5e-5, search=lambda r: 10 ** r.uniform(-5, -3.5), gt=0,
                       why="a zero or negative learning rate never lowers the loss")
    weight_decay: float = hparam(0.0, search=lambda r: 10 ** r.uniform(-6, -2), ge=0,
                                 why="a negative decay grows the weights without bound")
    batch_size: int = hparam(32, search=lambda r: int(2 ** r.uniform(3, 5.5)), ge=1,
                             why="each step needs at least one image per training domain")

    @classmethod
    def names(cls) -> list[str]:
        return [_external_name(f) for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls: type[H], values: Mapping[str, Any] | None, algorithm: str = "") -> H:
        values = dict(values or {})
        by_name = {_external_name(f): f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise ConfigError(
                f"train: hparams of {algorithm or cls.__name__} must be among {sorted(by_name)}, got unknown {unknown}."
            )
        kwargs = {by_name[key].name: _convert(by_name[key], key, value, algorithm or cls.__name__)
                  for key, value in values.items()}
        typed = cls(**kwargs)
        typed.check_values(algorithm=algorithm or cls.__name__)
        return typed

    @classmethod
    def sample(cls: type[H], seed: int) -> H:
        """Draw every searchable hparam (DomainBed-style: one RandomState per (seed, name))."""
        kwargs = {}
        for f in dataclasses.fields(cls):
            search = f.metadata.get("search")
            if search is not None:
                value = search(np.random.RandomState(seed_hash(seed, _external_name(f))))
                # numpy scalars (r.choice) become the field's Python type so to_dict() stays JSON-serialisable
                kind = type(f.default)
                kwargs[f.name] = kind(value) if kind in (int, float, bool) else value
        return cls(**kwargs)

    @classmethod
    def min_batch_size(cls) -> int:
        """The smallest per-domain batch (= distinct images per training domain) the algorithm's statistics need."""
        bound = next(f for f in dataclasses.fields(cls) if f.name == "batch_size").metadata["bound"]
        return int(bound.ge) if bound is not None and bound.ge is not None else 1

    @classmethod
    def batch_size_why(cls) -> str:
        return next(f for f in dataclasses.fields(cls) if f.name == "batch_size").metadata["bound"].why

    def check_values(self, *, algorithm: str) -> None:
        """Raise ConfigError for the first hparam outside its declared range (or a non-finite float)."""
        for f in dataclasses.fields(self):
            bound: Bound | None = f.metadata.get("bound")
            value = getattr(self, f.name)
            name = _external_name(f)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{algorithm}: hparam {name} must be a finite number, got {value!r}. "
                                  f"Set hparams.{name} in the train config to a finite value.")
            if bound is not None and not bound.holds(value):
                raise ConfigError(f"{algorithm}: hparam {name} must be {bound.text()} ({bound.why}), got {value!r}. "
                                  f"Set hparams.{name} {bound.text()} in the train config.")

    def validate(self, *, num_domains: int, algorithm: str) -> None:
        """``check_values`` plus the number of training domains (ConfigError naming the minimum and the fix)."""
        self.check_values(algorithm=algorithm)
        if num_domains < self.MIN_DOMAINS:
            raise ConfigError(
                f"{algorithm}: training domains must number >= {self.MIN_DOMAINS} ({self.MIN_DOMAINS_WHY}), got "
                f"{num_domains}. Train on more domains (ingest more sites, or split them with domain_columns), "
                "or use algorithm erm."
            )

    def inactive_penalty(self, *, steps: int, algorithm: str) -> str | None:
        """A warning when the schedule keeps the penalty off for the whole run of ``steps`` (then plain ERM);
        a warning, not an error: DomainBed's random search draws such schedules."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """Hparams under their DomainBed names (what run directories record)."""
        return {_external_name(f): getattr(self, f.name) for f in dataclasses.fields(self)}
