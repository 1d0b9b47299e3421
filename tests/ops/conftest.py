"""Fixtures of the op tests: each test starts from the default layout and one torch thread; ``layout``
parametrizes a test over every layout the planner may pick (tests/support/ops.py LAYOUTS)."""

import pytest
import torch
from support.ops import LAYOUTS, use_layout


@pytest.fixture(autouse=True)
def _one_thread_default_layout(monkeypatch):
    monkeypatch.delenv("MSVISION_LAYOUT", raising=False)
    monkeypatch.delenv("MSVISION_FALLBACK_KERNELS", raising=False)
    torch.set_num_threads(1)


@pytest.fixture(params=LAYOUTS)
def layout(request, monkeypatch):
    use_layout(request.param, monkeypatch)
    return request.param
