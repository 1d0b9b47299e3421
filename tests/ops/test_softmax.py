"""Op tests against PyTorch: softmax.

Tolerances and helpers: tests/support/ops.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.ops import (
    close,
    rand,
    run_behind_conv,
    run_graph,
    t64,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("shape", [(2, 17, 7, 5), (1, 1, 7, 5), (1, 3, 1, 1), (1, 48, 13, 17)], ids=str)
def test_softmax(shape):
    x = rand(*shape, scale=4.0)
    (out,) = run_graph(lambda g, i: g.softmax(i), [x])
    close(out, F.softmax(t64(x), dim=1), 1e-5, 1e-6, f"softmax {shape}")


def test_softmax_large_logits():
    x = np.array([1000.0, 999.0, -1000.0, 0.0], np.float32).reshape(1, 4, 1, 1)
    (out,) = run_graph(lambda g, i: g.softmax(i), [x])
    assert np.isfinite(out).all()
    close(out, F.softmax(t64(x), dim=1), 1e-5, 1e-6, "softmax of large logits")


@pytest.mark.parametrize("c", [16, 17])
def test_softmax_after_conv(c, layout):
    out, ref = run_behind_conv(
        lambda g, y: g.softmax(y), lambda t: F.softmax(t.double(), dim=1), rand(1, c, 7, 5)
    )
    close(out, ref, 1e-5, 1e-6, f"softmax after conv {layout}")
