"""Algorithm registry: ``@register_algorithm("fishr")``, ``list_algorithms()``, ``build(...)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from pipeline.algorithms.base import Algorithm
from pipeline.errors import ConfigError

_REGISTRY: dict[str, type[Algorithm]] = {}


def register_algorithm(name: str):
    def decorator(cls: type[Algorithm]) -> type[Algorithm]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"algorithm {name!r} registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def list_algorithms() -> list[str]:
    return sorted(_REGISTRY)


def get_algorithm_class(name: str) -> type[Algorithm]:
    key = name.lower()
    if key not in _REGISTRY:
        raise ConfigError(f"train: algorithm must be one of {list_algorithms()}, got {name!r}.")
    return _REGISTRY[key]


def build(name: str, featurizer: nn.Module, classifier: nn.Module, num_domains: int,
          hparams: Mapping[str, Any] | None = None) -> Algorithm:
    """Build algorithm ``name``; ``hparams`` uses DomainBed's names and may omit any (defaults fill in)."""
    cls = get_algorithm_class(name)
    typed = cls.HPARAMS.from_mapping(hparams, algorithm=name)
    return cls(featurizer, classifier, num_domains, typed)
