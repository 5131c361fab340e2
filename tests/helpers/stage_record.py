"""A complete stage.json (pipeline/artefacts/stage_file.py StageFile) from the few keys a test states, for tests
that build stage folders by hand: the standard keys get plain values, ``fields`` override or add (a stage's
extras)."""

from __future__ import annotations

from typing import Any


def stage_json(stage: str, **fields: Any) -> dict[str, Any]:
    """stage.json's content for ``stage`` as StageRecord writes it, with ``fields`` set (e.g. ``seed=7``,
    ``inputs={"ingest_dir": {"path": "...", "hash": "x"}}``, ``training_domains=[...]``)."""
    return {"stage": stage, "config": None, "seed": None, "started": "2026-01-01T00:00:00+00:00",
            "finished": "2026-01-01T00:00:01+00:00", "seconds": 1.0, "inputs": {}, "versions": {},
            "git_commit": None, "command": ["cxr-fishr", stage], **fields}
