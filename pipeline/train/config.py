"""The training config (``configs/train/<algo>.yaml``): algorithm + DomainBed-named hparams, network, schedule."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.config import StrictModel
from pipeline.data.augment import AugmentConfig
from pipeline.models import ModelConfig
from pipeline.protocol.selection import RULE_NAMES

SELECTION_RULES = RULE_NAMES  # pipeline/protocol/selection.py, in table order
# the config's field type: pydantic's error lists the valid names (Literal[tuple] is Literal of its members)
SelectionRule = Literal[RULE_NAMES]  # type: ignore[valid-type]

# Fields a resumed run may change: they do not touch the stream of updates (``steps`` may grow).
RESUMABLE_CHANGES = ("steps", "eval_every", "checkpoint_every", "device", "threads", "num_workers",
                     "eval_batch_size")


class TrainConfig(StrictModel):
    """One training run. ``hparams`` use DomainBed's names (``lr``, ``lambda``, ``penalty_anneal_iters``, ...);
    ``batch_size`` there is per training domain."""

    algorithm: str = "erm"
    hparams: dict[str, Any] = Field(default_factory=dict)
    model: ModelConfig = Field(default_factory=ModelConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    steps: int = Field(300, ge=1)
    eval_every: int = Field(50, ge=1)
    checkpoint_every: int = Field(50, ge=1)
    eval_batch_size: int = Field(128, ge=1)
    seed: int = 0
    selection: SelectionRule = "training_domain"  # the rule whose checkpoint becomes model.pt
    domain_columns: tuple[str, ...] = ("domain",)
    holdout_domain: str | None = None  # a training domain left out of training and scored (leave-one-domain-out)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # bf16 autocast, on CUDA only
    threads: int | None = Field(None, ge=1)
    num_workers: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _known_algorithm_and_hparams(self) -> TrainConfig:
        from pipeline.algorithms import get_algorithm_class

        # ConfigError lists the valid algorithms / hparam names.
        get_algorithm_class(self.algorithm).HPARAMS.from_mapping(self.hparams, algorithm=self.algorithm)
        if not self.domain_columns:
            raise ValueError("domain_columns must name at least one manifest column")
        return self

    def typed_hparams(self):
        from pipeline.algorithms import get_algorithm_class

        return get_algorithm_class(self.algorithm).HPARAMS.from_mapping(self.hparams, algorithm=self.algorithm)

    def resume_key(self) -> dict[str, Any]:
        """What must be equal between a checkpoint's config and the resuming config."""
        data = self.model_dump(mode="json")
        for name in RESUMABLE_CHANGES:
            data.pop(name, None)
        data["hparams"] = self.typed_hparams().to_dict()
        return data
