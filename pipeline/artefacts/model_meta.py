"""``ModelMeta``: the ``meta`` dict stored in every model file (``RUN/model.pt``, ``RUN/selected/<rule>.pt``;
pipeline/models save_model), written by the train loop (pipeline/train/loop.py ``_Run.meta``).

Model files written by other tools (tests, older versions) carry only some keys, so every key is optional and
:meth:`ModelMeta.to_dict` writes back exactly the keys that were given (a round trip never adds keys).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from pipeline.artefacts.base import Block, validation_problems
from pipeline.compat import InputProfile
from pipeline.errors import DataError


class StoredThreshold(Block):
    """The decision threshold train chose on its pooled val rows at the checkpoint's step (pipeline/decision_threshold.py
    uses it on an ingest that is not the model's own)."""

    value: float  # P(label = 1) >= value predicts positive
    source: str
    step: int | None
    n: int
    n_pos: int
    n_neg: int


class ModelMeta(Block):
    """What a model file says about how it was trained and selected."""

    algorithm: str | None = None
    # the algorithm's hyper-parameters (open-ended: each DomainBed algorithm has its own names)
    hparams: dict[str, int | float | str | bool | None] | None = None
    seed: int | None = None
    step: int | None = None  # the step of the weights in this file
    selection_rule: str | None = None
    selection_score: float | None = None
    training_domains: list[str] | None = None
    domain_columns: list[str] | None = None
    ingest_dir: str | None = None
    # the run's TrainConfig as dumped (pipeline/train/config.py owns that schema and validates it on load): Any
    # because this is a verbatim copy for provenance, never read field by field here
    train_config: dict[str, Any] | None = None
    holdout_domain: str | None = None
    image_size: int | None = None
    constant_predictor: bool | None = None  # the rule selected nothing: these are the final weights
    trained_on: InputProfile | None = None  # what the model consumed (pipeline/compat.py)
    unlabelled_skipped: dict[str, int] | None = None  # split -> unlabelled rows left out of training/selection
    selection_label: str | None = None  # oracle only: an upper bound, never a model selection
    threshold: StoredThreshold | None = None

    @classmethod
    def from_meta(cls, meta: Any, *, where: str = "<model file>") -> ModelMeta:
        """Validate a model file's meta dict; a DataError names ``where`` and the bad fields."""
        if not isinstance(meta, dict):
            raise DataError(f"models: {where} meta must be a dict, got {type(meta).__name__}. Re-train the model.")
        try:
            return cls.model_validate(meta)
        except ValidationError as exc:
            problems = validation_problems(exc)
            raise DataError(f"models: {where} meta does not match ModelMeta: {problems}. Re-train the model with "
                            "`cxr-fishr train`.") from None

    def to_dict(self) -> dict[str, Any]:
        """The meta as stored: JSON types, only the keys that were given."""
        return self.model_dump(mode="json", exclude_unset=True)
