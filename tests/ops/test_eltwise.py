"""Op tests against PyTorch: eltwise.

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


TRANSCENDENTAL = (1e-5, 1e-6)
EXACTISH = (1e-6, 1e-6)

# (name, alpha, beta, torch function, (rtol, atol))
ACTS = [
    ("relu", 0.0, 0.0, F.relu, EXACTISH),
    ("leaky_relu", 0.1, 0.0, lambda t: F.leaky_relu(t, 0.1), EXACTISH),
    ("sigmoid", 0.0, 0.0, torch.sigmoid, TRANSCENDENTAL),
    ("tanh", 0.0, 0.0, torch.tanh, TRANSCENDENTAL),
    ("gelu_erf", 0.0, 0.0, lambda t: F.gelu(t, approximate="none"), TRANSCENDENTAL),
    ("gelu_tanh", 0.0, 0.0, lambda t: F.gelu(t, approximate="tanh"), TRANSCENDENTAL),
    ("swish", 1.0, 0.0, F.silu, TRANSCENDENTAL),
    ("swish", 1.5, 0.0, lambda t: t * torch.sigmoid(1.5 * t), TRANSCENDENTAL),
    ("hardswish", 0.0, 0.0, F.hardswish, EXACTISH),
    ("clip", -0.5, 0.7, lambda t: torch.clamp(t, -0.5, 0.7), EXACTISH),
    ("elu", 1.0, 0.0, F.elu, TRANSCENDENTAL),
    ("elu", 0.5, 0.0, lambda t: F.elu(t, 0.5), TRANSCENDENTAL),
    ("exp", 0.0, 0.0, torch.exp, TRANSCENDENTAL),
    ("linear", 2.0, -0.5, lambda t: 2.0 * t - 0.5, EXACTISH),
    ("square", 0.0, 0.0, torch.square, EXACTISH),
    ("sqrt", 0.0, 0.0, torch.sqrt, TRANSCENDENTAL),  # NaN below 0 on both sides
    ("pow", 1.0, -0.5, torch.rsqrt, TRANSCENDENTAL),  # TF's Rsqrt
    ("pow", 2.0, 3.0, lambda t: 2.0 * t**3, TRANSCENDENTAL),
    ("abs", 0.0, 0.0, torch.abs, EXACTISH),
]
ACT_IDS = [f"{a[0]}_{a[1]}" for a in ACTS]


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
@pytest.mark.parametrize("shape", [(2, 17, 7, 5), (1, 1, 1, 1), (1, 48, 13, 17)], ids=str)
def test_eltwise(act, shape):
    name, alpha, beta, fn, (rtol, atol) = act
    x = rand(*shape, scale=3.0)  # covers the hardswish / clip / gelu knees
    (out,) = run_graph(lambda g, i: g.eltwise(i, act=name, alpha=alpha, beta=beta), [x])
    close(out, fn(t32(x)), rtol, atol, f"eltwise {name} {shape}")


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_eltwise_after_conv(act, layout):
    """Unfused eltwise reading a conv result in the planner's layout (32 channels: blocked is nChw16c)."""
    name, alpha, beta, fn, (rtol, atol) = act
    out, ref = run_behind_conv(
        lambda g, y: g.eltwise(y, act=name, alpha=alpha, beta=beta), fn, rand(1, 32, 7, 5)
    )
    close(out, ref, rtol, atol, f"eltwise {name} after conv {layout}")


def test_eltwise_extremes():
    """exp overflows to inf like torch (and may flush denormal results to 0); sigmoid saturates cleanly."""
    x = np.array([-100.0, -20.0, 0.0, 20.0, 88.0, 89.0, 100.0], np.float32).reshape(1, 7, 1, 1)
    out_exp, out_sig = run_graph(lambda g, i: [g.eltwise(i, act="exp"), g.eltwise(i, act="sigmoid")], [x])
    close(out_exp, torch.exp(t32(x)), 1e-5, 1e-37, "exp extremes")
    close(out_sig, torch.sigmoid(t32(x)), 1e-5, 1e-6, "sigmoid extremes")


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
@pytest.mark.parametrize("channels", [1, 3, 20])
def test_eltwise_on_channel_padded_layouts(act, channels, layout):
    """Channel counts that are not a multiple of the blocked layout's block: an activation that does not map 0 to
    0 (sigmoid, exp, ...) has no fast oneDNN kernel there (it would write the zero padding) and runs on the C
    kernel, which keeps the padding zero (MSVISION_REFUSE_REF fails the test if a reference kernel is planned)."""
    name, alpha, beta, fn, (rtol, atol) = act
    out, ref = run_behind_conv(
        lambda g, y: g.eltwise(y, act=name, alpha=alpha, beta=beta), fn, rand(1, channels, 9, 6)
    )
    close(out, ref, rtol, atol, f"eltwise {name} after a {channels}-channel conv {layout}")
