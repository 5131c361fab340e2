"""A tiny domain-generalisation problem (tests.helpers.networks) for the algorithm tests."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.networks import tiny_networks

torch.set_num_threads(1)


@pytest.fixture
def networks():
    return tiny_networks
