"""Fish: inner loop on a clone, one Adam step per domain, then the meta update towards the clone."""

import copy

import torch
import torch.nn.functional as F

from pipeline.algorithms import build
from tests.helpers.networks import tiny_minibatches, tiny_networks


def test_fish_update_two_steps_matches_clone_then_meta_update():
    featurizer, head = tiny_networks()
    reference = torch.nn.Sequential(copy.deepcopy(featurizer), copy.deepcopy(head))
    algorithm = build("fish", featurizer, head, 3, {"meta_lr": 0.3, "lr": 0.01})
    inner_state = None
    for seed in range(2):
        batches = tiny_minibatches(seed)
        inner = copy.deepcopy(reference)
        inner_opt = torch.optim.Adam(inner.parameters(), lr=0.01)
        if inner_state is not None:
            inner_opt.load_state_dict(inner_state)  # the inner Adam's moments persist across updates
        for x, y in batches:
            inner_opt.zero_grad()
            F.cross_entropy(inner(x), y).backward()
            inner_opt.step()
        inner_state = inner_opt.state_dict()
        with torch.no_grad():
            for p, q in zip(reference.parameters(), inner.parameters(), strict=True):
                p += 0.3 * (q - p)
        algorithm.update(batches)
        for got, want in zip(algorithm.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
