"""Fish (Shi et al. 2021), DomainBed's version: clone the network, take one inner Adam step per domain in turn
(the inner Adam's moments persist across updates), then move the weights towards the clone's:
theta <- theta + meta_lr * (theta_inner - theta), for every entry of the state dict (buffers included)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.algorithms.base import Algorithm, Minibatches
from pipeline.algorithms.hparams import HParams, hparam
from pipeline.algorithms.registry import register_algorithm


@dataclass(frozen=True)
class FishHParams(HParams):
    MIN_DOMAINS: ClassVar[int] = 2
    MIN_DOMAINS_WHY: ClassVar[str] = "with one domain the inner loop is a single step: plain ERM"

    meta_lr: float = hparam(0.5, search=lambda r: r.choice([0.05, 0.1, 0.5]), gt=0, le=1,
                            why="the weights move meta_lr of the way to the inner loop's: 0 never moves them, "
                                "above 1 overshoots")


def fish_meta_update(meta: dict[str, torch.Tensor], inner: dict[str, torch.Tensor], meta_lr: float) -> None:
    """In place: meta[k] <- meta[k] + meta_lr * (inner[k] - meta[k]), cast back to meta[k]'s dtype."""
    with torch.no_grad():
        for key, value in meta.items():
            value.copy_((value + meta_lr * (inner[key] - value)).to(value.dtype))


@register_algorithm("fish")
class Fish(Algorithm[FishHParams]):
    HPARAMS = FishHParams
    PER_DOMAIN_FORWARD = True

    def __init__(self, featurizer: nn.Module, classifier: nn.Module, num_domains: int, hparams: FishHParams) -> None:
        super().__init__(featurizer, classifier, num_domains, hparams)
        self.inner_optimizer_state: dict[str, Any] | None = None

    def _meta_network(self) -> nn.Module:
        return nn.ModuleDict({"featurizer": self.featurizer, "classifier": self.classifier})

    def update(self, minibatches: Minibatches) -> dict[str, float]:
        meta_network = self._meta_network()
        inner_network = copy.deepcopy(meta_network)
        inner_opt = self.make_optimizer(inner_network.parameters())
        if self.inner_optimizer_state is not None:
            inner_opt.load_state_dict(self.inner_optimizer_state)
        for x, y in minibatches:
            loss = F.cross_entropy(inner_network["classifier"](inner_network["featurizer"](x)), y)
            inner_opt.zero_grad()
            loss.backward()
            inner_opt.step()
        self.inner_optimizer_state = inner_opt.state_dict()
        fish_meta_update(meta_network.state_dict(), inner_network.state_dict(), self.hparams.meta_lr)
        self.update_count += 1
        return {"loss": loss.item()}  # the last domain's inner loss, as DomainBed

    # the inner Adam's moments, for resuming
    def get_extra_state(self) -> Any:
        return {"inner_optimizer": copy.deepcopy(self.inner_optimizer_state)}

    def set_extra_state(self, state: Any) -> None:
        self.inner_optimizer_state = copy.deepcopy(state["inner_optimizer"])
