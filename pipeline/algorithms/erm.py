"""ERM: minimise the mean cross-entropy over the concatenated per-domain minibatches."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.algorithms.base import Algorithm, Minibatches
from pipeline.algorithms.hparams import HParams
from pipeline.algorithms.registry import register_algorithm


@register_algorithm("erm")
class ERM(Algorithm[HParams]):
    HPARAMS = HParams

    def update(self, minibatches: Minibatches) -> dict[str, float]:
        x = torch.cat([x for x, _ in minibatches])
        y = torch.cat([y for _, y in minibatches])
        loss = F.cross_entropy(self.predict(x), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.update_count += 1
        return {"loss": loss.item()}
