"""The algorithm contract (DomainBed's): ``update(minibatches) -> dict[str, float]`` owns its optimizer step,
``predict(x) -> logits``. Everything needed to resume (optimizer, moving averages) is in ``state_dict()``."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import nn

from pipeline.algorithms.hparams import HParams
from pipeline.errors import ConfigError

H = TypeVar("H", bound=HParams)
Minibatches = list[tuple[torch.Tensor, torch.Tensor]]


class Algorithm(nn.Module, Generic[H]):
    """A domain-generalisation algorithm over ``network = classifier(featurizer(x))``.

    Subclasses set ``HPARAMS`` (their hparams dataclass) and implement ``update``. The optimizer lives on the
    algorithm so ``update`` can reset it (Fishr, IRM, V-REx re-create it when the penalty switches on: always read
    ``algorithm.optimizer`` afresh, never keep a reference) and ``state_dict`` can carry it (resume). State that is
    neither a tensor nor the main optimizer (DANN's discriminator optimizer, Fish's inner Adam) travels through
    ``get_extra_state``/``set_extra_state`` (the ``_extra_state`` key of ``state_dict()``).
    """

    HPARAMS: type[HParams] = HParams
    name: str = ""
    # True where update() forwards each domain's minibatch on its own (BatchNorm then sees batch_size images)
    PER_DOMAIN_FORWARD: ClassVar[bool] = False

    def __init__(self, featurizer: nn.Module, classifier: nn.Module, num_domains: int, hparams: H) -> None:
        super().__init__()
        # refused before any weight is touched: a degenerate hparam or too few domains for the penalty
        hparams.validate(num_domains=num_domains, algorithm=self.name or type(self).__name__.lower())
        self._check_batch_statistics(featurizer, hparams.batch_size)
        self.featurizer = featurizer
        self.classifier = classifier
        self.num_domains = num_domains
        self.hparams = hparams
        self.optimizer = self.make_optimizer(self.parameters())
        self.register_buffer("update_count", torch.zeros((), dtype=torch.long))

    def _check_batch_statistics(self, featurizer: nn.Module, batch_size: int) -> None:
        """BatchNorm in training mode over a single image has no batch statistics (torch raises once the feature map
        is 1x1, e.g. resnet at 32 px): refuse batch_size 1 up front where each domain is forwarded alone."""
        has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in featurizer.modules())
        if self.PER_DOMAIN_FORWARD and has_batch_norm and batch_size < 2:
            raise ConfigError(
                f"{self.name}: hparam batch_size must be >= 2 with a BatchNorm backbone (each domain's minibatch "
                f"is forwarded alone and BatchNorm's batch statistics are undefined for 1 image), got {batch_size}. "
                "Set hparams.batch_size >= 2, or model.norm_layer: group."
            )

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    @property
    def network(self) -> nn.Module:
        """featurizer -> classifier as one module (what model.pt stores and evaluate/audit load)."""
        from pipeline.models.network import Classifier

        return Classifier(self.featurizer, self.classifier)

    def update(self, minibatches: Minibatches) -> dict[str, float]:
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.featurizer(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(x)

    # Resume: module state (weights, buffers such as Fishr's moving averages) plus the optimizer.
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        state = super().state_dict(*args, **kwargs)
        state["__optimizer__"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True, assign: bool = False):  # type: ignore[override]
        state = dict(state)
        optimizer_state = state.pop("__optimizer__", None)
        result = super().load_state_dict(state, strict=strict, assign=assign)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        return result
