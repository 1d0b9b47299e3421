"""Op tests against PyTorch: prelu.

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
    t32,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("c,shared", [(17, False), (17, True), (1, False), (48, False), (3, True)])
@pytest.mark.parametrize("n,h,w_", [(2, 7, 5), (1, 1, 1)])
def test_prelu(c, shared, n, h, w_):
    x = rand(n, c, h, w_)
    slope = rand(1 if shared else c, seed=3) * 0.5
    (out,) = run_graph(lambda g, i: g.prelu(i, g.const(slope)), [x])
    close(out, F.prelu(t32(x), t32(slope)), 1e-6, 1e-6, f"prelu c={c} shared={shared}")


@pytest.mark.parametrize("c", [16, 17])
def test_prelu_after_conv(c, layout):
    slope = rand(c, seed=3) * 0.5
    out, ref = run_behind_conv(
        lambda g, y: g.prelu(y, g.const(slope)), lambda t: F.prelu(t, t32(slope)), rand(1, c, 7, 5)
    )
    close(out, ref, 1e-6, 1e-6, f"prelu after conv {layout}")


def test_prelu_4d_slope():
    x = rand(1, 3, 4, 4)
    slope = np.array([0.1, 0.2, 0.3], np.float32)
    (out,) = run_graph(lambda g, i: g.prelu(i, g.const(slope.reshape(1, 3, 1, 1))), [x])
    close(out, F.prelu(t32(x), t32(slope)), 1e-6, 1e-6, "prelu with a (1, C, 1, 1) slope")
