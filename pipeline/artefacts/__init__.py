"""Typed models of every stage output (docs/design/artefacts.md lists their fields).

Each artefact is built by the stage that writes it and loaded, validated and versioned, by every reader; readers
never walk nested dicts with ``.get(..) or {}``. Import the model from its module, e.g.
``from pipeline.artefacts.metrics import MetricsFile``.
"""

from pipeline.artefacts.base import Artefact, Block

__all__ = ["Artefact", "Block"]
