"""Op tests against PyTorch: layer norm.

Tolerances and helpers: tests/support/ops.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.ops import (
    close,
    ln2d,
    rand,
    run_behind_conv,
    run_graph,
    t64,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("c", [1, 3, 16, 17, 32, 48])
@pytest.mark.parametrize("affine", ["both", "scale", "shift", "none"])
def test_layer_norm(c, affine):
    x = rand(2, c, 7, 5, scale=2.0) + 0.5
    sc = rand(c, seed=2) if affine in ("both", "scale") else None
    sh = rand(c, seed=3) if affine in ("both", "shift") else None

    def build(g, i):
        return g.layer_norm(
            i, scale=-1 if sc is None else g.const(sc), shift=-1 if sh is None else g.const(sh), eps=1e-6
        )

    (out,) = run_graph(build, [x])
    ref = ln2d(t64(x), None if sc is None else t64(sc), None if sh is None else t64(sh), 1e-6)
    close(out, ref, 1e-5, 1e-5, f"layer norm c={c} {affine}")


@pytest.mark.parametrize("c", [16, 17, 32, 48])
def test_layer_norm_after_conv(c, layout):
    sc, sh = rand(c, seed=2), rand(c, seed=3)
    out, ref = run_behind_conv(
        lambda g, y: g.layer_norm(y, scale=g.const(sc), shift=g.const(sh), eps=1e-5),
        lambda t: ln2d(t.double(), t64(sc), t64(sh), 1e-5),
        rand(1, c, 13, 17),
    )
    close(out, ref, 1e-5, 1e-5, f"layer norm after conv c={c} {layout}")


def test_layer_norm_large_eps_and_constant_input():
    x = np.full((1, 5, 3, 3), 7.0, np.float32)
    x[0, :, 1, 1] = np.arange(5)
    (out,) = run_graph(lambda g, i: g.layer_norm(i, scale=None, shift=None, eps=0.5), [x])
    close(out, ln2d(t64(x), None, None, 0.5), 1e-5, 1e-5, "layer norm eps=0.5")
