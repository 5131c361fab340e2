"""Typed hparams declared beside each algorithm, with DomainBed's names and random-search distributions.

    @dataclass(frozen=True)
    class FishrHParams(HParams):
        lam: float = hparam(1000.0, name="lambda", search=lambda r: 10 ** r.uniform(1, 4))

``HParams.from_mapping({"lambda": 100, "lr": 1e-4})`` accepts DomainBed's names (unknown names raise a
ConfigError listing the valid ones); ``HParams.sample(seed)`` draws every hparam from its own stream
(``seed_hash(seed, name)``, as DomainBed does) so adding an hparam never shifts the others.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from pipeline.errors import ConfigError

H = TypeVar("H", bound="HParams")


def seed_hash(*args: Any) -> int:
    """A 31-bit integer from the arguments' text (DomainBed's seed_hash)."""
    return int(hashlib.md5(str(args).encode("utf-8")).hexdigest(), 16) % (2**31)


def hparam(default: Any, *, search: Callable[[np.random.RandomState], Any] | None = None, name: str | None = None):
    """A hparam field: its default, its random-search distribution, its DomainBed name if not the field's."""
    return field(default=default, metadata={"search": search, "name": name})


def _external_name(f: dataclasses.Field) -> str:
    return f.metadata.get("name") or f.name


@dataclass(frozen=True)
class HParams:
    """Hparams every algorithm has (DomainBed's image defaults and search ranges)."""

    lr: float = hparam(5e-5, search=lambda r: 10 ** r.uniform(-5, -3.5))
    weight_decay: float = hparam(0.0, search=lambda r: 10 ** r.uniform(-6, -2))
    batch_size: int = hparam(32, search=lambda r: int(2 ** r.uniform(3, 5.5)))

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
        kwargs = {}
        for key, value in values.items():
            f = by_name[key]
            kind = type(f.default)
            try:
                kwargs[f.name] = kind(value) if kind in (int, float, bool) else value
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"train: hparam {key} must be {kind.__name__}, got {value!r} ({algorithm or cls.__name__})."
                ) from exc
        return cls(**kwargs)

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

    def to_dict(self) -> dict[str, Any]:
        """Hparams under their DomainBed names (what run directories record)."""
        return {_external_name(f): getattr(self, f.name) for f in dataclasses.fields(self)}
