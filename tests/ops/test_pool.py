"""Op tests against PyTorch: pooling.

Tolerances and helpers: tests/support/ops.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from support.ops import (
    POOL_KINDS,
    close,
    exact,
    rand,
    run_behind_conv,
    run_graph,
    t32,
    t64,
)

torch.set_num_threads(1)


# (N, C, H, W, kernel, stride, symmetric padding (ph, pw), ceil_mode)
POOL_CASES = [
    (2, 17, 13, 17, (3, 3), (2, 2), (1, 1), False),
    (2, 17, 13, 17, (3, 3), (2, 2), (1, 1), True),
    (1, 3, 7, 5, (2, 2), (2, 2), (0, 0), False),
    (1, 3, 7, 5, (2, 2), (2, 2), (0, 0), True),
    (1, 16, 13, 17, (3, 3), (1, 1), (1, 1), False),
    (1, 5, 13, 17, (3, 2), (2, 1), (1, 0), True),
    (1, 5, 7, 5, (5, 5), (3, 3), (2, 2), True),
    (1, 48, 32, 31, (7, 7), (2, 2), (3, 3), False),
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0), False),
    (1, 3, 6, 6, (3, 3), (2, 2), (0, 0), False),
]
# Extra ceil_mode cases whose last window hangs past the input *and* its bottom/right padding.
POOL_CASES += [
    (1, 3, 6, 6, (3, 3), (2, 2), (0, 0), True),
    (2, 17, 13, 17, (2, 2), (2, 2), (0, 0), True),
]


def _pool_overhangs(case):
    """ceil_mode cases whose last window hangs past input + padding (torch's include-pad divisor only counts
    the part of the window inside input + padding)."""
    _, _, h, w, k, s, p, ceil = case
    if not ceil:
        return False
    for size, kk, ss, pp in ((h, k[0], s[0], p[0]), (w, k[1], s[1], p[1])):
        o = -(-(size + 2 * pp - kk) // ss) + 1
        if (o - 1) * ss >= size + pp:
            o -= 1
        if (o - 1) * ss + kk > size + 2 * pp:
            return True
    return False


def _pool_ref(kind, x, k, s, p, ceil):
    tx = t32(x)
    if kind == "max":
        return F.max_pool2d(tx, k, s, p, ceil_mode=ceil)
    return F.avg_pool2d(tx, k, s, p, ceil_mode=ceil, count_include_pad=POOL_KINDS[kind])


def _pool_case_id(c):
    return "n{}c{}_{}x{}_k{}x{}_s{}{}_p{}{}_{}".format(
        *c[:4], *c[4], *c[5], *c[6], "ceil" if c[7] else "floor"
    )


def _pool_param(kind, case):
    return pytest.param(kind, case, id=f"{kind}-{_pool_case_id(case)}")


def _include_pad_unsupported(kind, case):
    """count_include_pad with ceil-mode overhang and padding: PyTorch counts the padding but not the overhang,
    which oneDNN cannot express; msvision refuses it at build time instead of answering wrongly."""
    p = case[6]
    return kind == "avg_include_pad" and _pool_overhangs(case) and (p[0] or p[1])


@pytest.mark.parametrize("kind,case", [_pool_param(k, c) for k in POOL_KINDS for c in POOL_CASES])
def test_pool2d(kind, case):
    n, c, h, w_, k, s, p, ceil = case
    x = rand(n, c, h, w_)
    pad = (p[0], p[1], p[0], p[1])
    if _include_pad_unsupported(kind, case):
        with pytest.raises(NotImplementedError, match="count_include_pad"):
            run_graph(
                lambda g, i: g.pool2d(i, kind=kind, kernel=k, ceil_mode=ceil, stride=s, padding=pad), [x]
            )
        return
    (out,) = run_graph(
        lambda g, i: g.pool2d(i, kind=kind, kernel=k, ceil_mode=ceil, stride=s, padding=pad), [x]
    )
    ref = _pool_ref(kind, x, k, s, p, ceil)
    if kind == "max":
        exact(out, ref, f"pool {kind} {case}")
    else:
        close(out, ref, 1e-6, 1e-6, f"pool {kind} {case}")


@pytest.mark.parametrize("kind", list(POOL_KINDS))
def test_pool2d_asymmetric_padding(kind):
    """Padding (t, l, b, r) = (1, 0, 0, 1), which torch's pooling cannot express: reference via F.pad."""
    x = rand(2, 5, 7, 6)
    (out,) = run_graph(
        lambda g, i: g.pool2d(
            i, kind=kind, kernel=(3, 2), ceil_mode=False, stride=(2, 2), padding=(1, 0, 0, 1)
        ),
        [x],
    )
    tx = t64(x)
    if kind == "max":
        ref = F.max_pool2d(F.pad(tx, (0, 1, 1, 0), value=-math.inf), (3, 2), (2, 2))
    elif kind == "avg_include_pad":
        ref = F.avg_pool2d(F.pad(tx, (0, 1, 1, 0)), (3, 2), (2, 2))
    else:
        ones = F.pad(torch.ones_like(tx), (0, 1, 1, 0))
        ref = F.avg_pool2d(F.pad(tx, (0, 1, 1, 0)), (3, 2), (2, 2)) / F.avg_pool2d(ones, (3, 2), (2, 2))
    close(out, ref, 1e-6, 1e-6, f"pool {kind} asymmetric")


@pytest.mark.parametrize("kind", list(POOL_KINDS))
def test_pool2d_after_conv(kind, layout):
    out, ref = run_behind_conv(
        lambda g, y: g.pool2d(
            y, kind=kind, kernel=(3, 3), ceil_mode=True, stride=(2, 2), padding=(1, 1, 1, 1)
        ),
        lambda t: _pool_ref(kind, t.numpy(), (3, 3), (2, 2), (1, 1), True),
        rand(1, 32, 13, 17),
    )
    close(out, ref, 1e-6, 1e-6, f"pool {kind} after conv {layout}")


@pytest.mark.parametrize("shape", [(2, 17, 7, 5), (1, 1, 1, 1), (1, 48, 32, 31), (2, 3, 13, 17)], ids=str)
def test_global_avg_pool(shape):
    x = rand(*shape)
    (out,) = run_graph(lambda g, i: g.global_avg_pool(i), [x])
    close(out, F.adaptive_avg_pool2d(t64(x), 1), 1e-6, 1e-6, f"global avg pool {shape}")


@pytest.mark.parametrize("c", [16, 17])
def test_global_avg_pool_after_conv(c, layout):
    out, ref = run_behind_conv(
        lambda g, y: g.global_avg_pool(y), lambda t: F.adaptive_avg_pool2d(t, 1), rand(2, c, 13, 17)
    )
    close(out, ref, 1e-6, 1e-6, f"global avg pool after conv {layout}")
