"""DANN (Ganin et al. 2016), DomainBed's version: a domain discriminator (MLP on the features) and the
featurizer + classifier play a min-max game with separate Adam optimizers; ``d_steps_per_g_step`` discriminator
steps alternate with one generator step (counting from 1, so the first update is a generator step when it is 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.algorithms.base import Algorithm, Minibatches
from pipeline.algorithms.hparams import HParams, hparam
from pipeline.algorithms.registry import register_algorithm


@dataclass(frozen=True)
class DANNHParams(HParams):
    MIN_DOMAINS: ClassVar[int] = 2
    MIN_DOMAINS_WHY: ClassVar[str] = "the discriminator must tell domains apart, its loss is identically 0 " \
                                     "with one domain"

    lam: float = hparam(1.0, name="lambda", search=lambda r: 10 ** r.uniform(-2, 2), gt=0,
                        why="0 trains plain ERM, a negative weight helps the discriminator")
    lr_g: float = hparam(5e-5, search=lambda r: 10 ** r.uniform(-5, -3.5), gt=0,
                         why="a zero or negative learning rate never trains the generator")
    lr_d: float = hparam(5e-5, search=lambda r: 10 ** r.uniform(-5, -3.5), gt=0,
                         why="a zero or negative learning rate never trains the discriminator")
    weight_decay_g: float = hparam(0.0, search=lambda r: 10 ** r.uniform(-6, -2), ge=0,
                                   why="a negative decay grows the weights without bound")
    weight_decay_d: float = hparam(0.0, search=lambda r: 10 ** r.uniform(-6, -2), ge=0,
                                   why="a negative decay grows the weights without bound")
    d_steps_per_g_step: int = hparam(1, search=lambda r: int(2 ** r.uniform(0, 3)), ge=1,
                                     why="with 0 the discriminator never takes a step")
    grad_penalty: float = hparam(0.0, search=lambda r: 10 ** r.uniform(-2, 1), ge=0,
                                 why="a negative gradient penalty rewards a steep discriminator")
    beta1: float = hparam(0.5, search=lambda r: r.choice([0.0, 0.5]), ge=0, lt=1,
                          why="Adam's first-moment decay")
    mlp_width: int = hparam(256, search=lambda r: int(2 ** r.uniform(6, 10)), ge=1,
                            why="the discriminator needs hidden units")
    mlp_depth: int = hparam(3, search=lambda r: int(r.choice([3, 4, 5])), ge=2,
                            why="the discriminator has at least an input and an output layer")
    mlp_dropout: float = hparam(0.0, search=lambda r: r.choice([0.0, 0.1, 0.5]), ge=0, lt=1,
                                why="dropout 1 zeroes every hidden unit of the discriminator")


class MLP(nn.Sequential):
    """DomainBed's MLP: Linear -> Dropout -> ReLU, (depth - 2) hidden layers alike, then a Linear output."""

    def __init__(self, n_inputs: int, n_outputs: int, width: int, depth: int, dropout: float) -> None:
        layers: list[nn.Module] = []
        for n_in in [n_inputs] + [width] * (depth - 2):
            layers += [nn.Linear(n_in, width), nn.Dropout(dropout), nn.ReLU()]
        super().__init__(*layers, nn.Linear(width, n_outputs))


def discriminator_loss(disc_out: torch.Tensor, disc_input: torch.Tensor, domain_labels: torch.Tensor,
                       grad_penalty: float) -> torch.Tensor:
    """Domain cross-entropy + grad_penalty * E ||d CE_sum / d input||^2 (the gradient penalty of DomainBed)."""
    loss = F.cross_entropy(disc_out, domain_labels)
    if grad_penalty > 0:  # DomainBed always builds this term; with weight 0 it only costs time
        input_grad = torch.autograd.grad(F.cross_entropy(disc_out, domain_labels, reduction="sum"),
                                         [disc_input], create_graph=True)[0]
        loss = loss + grad_penalty * (input_grad**2).sum(dim=1).mean(dim=0)
    return loss


@register_algorithm("dann")
class DANN(Algorithm[DANNHParams]):
    HPARAMS = DANNHParams

    def __init__(self, featurizer: nn.Module, classifier: nn.Module, num_domains: int, hparams: DANNHParams) -> None:
        super().__init__(featurizer, classifier, num_domains, hparams)
        hp = hparams
        n_features = classifier.in_features
        self.discriminator = MLP(n_features, num_domains, hp.mlp_width, hp.mlp_depth, hp.mlp_dropout)
        self.disc_opt = torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr_d, weight_decay=hp.weight_decay_d,
                                         betas=(hp.beta1, 0.9))
        self.optimizer = self.make_optimizer(list(self.featurizer.parameters()) + list(self.classifier.parameters()))

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam(params, lr=hp.lr_g, weight_decay=hp.weight_decay_g, betas=(hp.beta1, 0.9))

    def update(self, minibatches: Minibatches) -> dict[str, float]:
        if len(minibatches) != self.num_domains:
            raise ValueError(f"dann: update needs one minibatch per domain ({self.num_domains}), "
                             f"got {len(minibatches)}")
        self.update_count += 1  # DomainBed counts from 1 here
        x = torch.cat([x for x, _ in minibatches])
        y = torch.cat([y for _, y in minibatches])
        z = self.featurizer(x)
        domain_labels = torch.cat([torch.full((len(y_e),), e, dtype=torch.long, device=z.device)
                                   for e, (_, y_e) in enumerate(minibatches)])
        disc_loss = discriminator_loss(self.discriminator(z), z, domain_labels, self.hparams.grad_penalty)

        d_steps = self.hparams.d_steps_per_g_step
        if int(self.update_count) % (1 + d_steps) < d_steps:
            self.disc_opt.zero_grad()
            disc_loss.backward()
            self.disc_opt.step()
            with torch.no_grad():
                nll = F.cross_entropy(self.classifier(z), y)
            return {"loss": disc_loss.item(), "nll": nll.item(), "penalty": disc_loss.item(), "disc_step": 1.0}
        nll = F.cross_entropy(self.classifier(z), y)
        gen_loss = nll - self.hparams.lam * disc_loss
        self.disc_opt.zero_grad()
        self.optimizer.zero_grad()
        gen_loss.backward()
        self.optimizer.step()
        return {"loss": gen_loss.item(), "nll": nll.item(), "penalty": disc_loss.item(), "disc_step": 0.0}

    # the discriminator's optimizer, for resuming (the generator's is the base class's ``optimizer``)
    def get_extra_state(self) -> Any:
        return {"disc_opt": self.disc_opt.state_dict()}

    def set_extra_state(self, state: Any) -> None:
        self.disc_opt.load_state_dict(state["disc_opt"])
