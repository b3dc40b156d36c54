"""Shared fixtures: small fixed-weight networks in float64, seeded."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

# Offline development and CI: the sentence files beside the checkout (../shared/data/sentiment), as the
# Makefile exports them; an explicit $NEURONIMP_SENTIMENT_DIR wins.
_SENTIMENT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sentiment"
if _SENTIMENT.is_dir():
    os.environ.setdefault("NEURONIMP_SENTIMENT_DIR", str(_SENTIMENT))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for the test (tiny ops: faster, and immune to a busy machine); restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def toy_cnn() -> nn.Module:
    """A tiny conv net (every ReLU its own module), float64, eval mode."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 4, 3)
    ).double().eval()


def toy_mlp() -> nn.Module:
    """A tiny MLP with biases, float64, eval mode."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 7), nn.ReLU(), nn.Linear(7, 3)).double().eval()


@pytest.fixture
def cnn() -> nn.Module:
    return toy_cnn()


@pytest.fixture
def mlp() -> nn.Module:
    return toy_mlp()
