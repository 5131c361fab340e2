"""Domain-generalisation algorithms (DomainBed's contract); importing this package registers all of them."""

from pipeline.algorithms import coral, dann, erm, fish, fishr, groupdro, irm, vrex  # noqa: F401  (registers)
from pipeline.algorithms.base import Algorithm
from pipeline.algorithms.hparams import HParams
from pipeline.algorithms.registry import build, get_algorithm_class, list_algorithms, register_algorithm

__all__ = ["Algorithm", "HParams", "build", "get_algorithm_class", "list_algorithms", "register_algorithm"]
