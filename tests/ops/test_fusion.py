"""Op tests against PyTorch: fused post-op chains.

Tolerances and helpers: tests/support/ops.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support.ops import (
    BINOPS,
    BROADCASTS,
    CONV_RTOL,
    close,
    conv3,
    conv_atol,
    ln2d,
    operand,
    rand,
    run_graph,
    t32,
    t64,
    weight,
)

torch.set_num_threads(1)


FUSED = ["add_residual_clip", "relu", "mul_const_add_act", "sub_div", "sigmoid_mul_input", "five_post_ops",
         "conv_plus_conv_relu", "spatial_const", "gap_operand", "hardswish_linear", "max_min"]  # fmt: skip


@pytest.mark.parametrize("chain", FUSED)
@pytest.mark.parametrize("c", [16, 17])
def test_fused_conv_chains(chain, c, layout):
    """conv followed by binary/eltwise ops that finalize() folds into oneDNN post-ops."""
    n, h, w_ = 2, 13, 17
    x = rand(n, c, h, w_)
    wt, b = weight(c, c, 3, 3, fan_in=9 * c), rand(c, seed=2)
    w2 = weight(c, c, 3, 3, fan_in=9 * c, seed=9)
    beta = rand(1, c, 1, 1, seed=3)
    spatial = rand(1, 1, h, w_, seed=4)
    divisor = operand((1, c, 1, 1), seed=6)
    tx = t64(x)
    conv = F.conv2d(tx, t64(wt), t64(b), padding=1)

    if chain == "add_residual_clip":  # NAFNet-style: clip(conv(x) + x)

        def build(g, i):
            return g.eltwise(g.binary(conv3(g, i, wt, b), i, op="add"), act="clip", alpha=-0.5, beta=0.5)

        ref = torch.clamp(conv + tx, -0.5, 0.5)
    elif chain == "relu":

        def build(g, i):
            return g.eltwise(conv3(g, i, wt, b), act="relu")

        ref = F.relu(conv)
    elif chain == "mul_const_add_act":  # y * beta + x

        def build(g, i):
            return g.binary(g.binary(conv3(g, i, wt, b), g.const(beta), op="mul"), i, op="add")

        ref = conv * t64(beta) + tx
    elif chain == "sub_div":  # (conv(x) - x) / d: the operand order of non-commutative post-ops

        def build(g, i):
            return g.binary(g.binary(conv3(g, i, wt, b), i, op="sub"), g.const(divisor), op="div")

        ref = (conv - tx) / t64(divisor)
    elif chain == "sigmoid_mul_input":  # gating: sigmoid(conv(x)) * x

        def build(g, i):
            return g.binary(g.eltwise(conv3(g, i, wt, b), act="sigmoid"), i, op="mul")

        ref = torch.sigmoid(conv) * tx
    elif chain == "five_post_ops":  # more than MSV_MAX_POST_OPS (4) consumers in a chain

        def build(g, i):
            y = g.eltwise(conv3(g, i, wt, b), act="linear", alpha=0.5, beta=0.25)
            y = g.binary(y, i, op="add")
            y = g.eltwise(y, act="leaky_relu", alpha=0.2)
            y = g.binary(y, g.const(beta), op="mul")
            return g.eltwise(y, act="tanh")

        ref = torch.tanh(F.leaky_relu((conv * 0.5 + 0.25) + tx, 0.2) * t64(beta))
    elif chain == "conv_plus_conv_relu":  # operand is another conv's result (in its own layout)

        def build(g, i):
            return g.eltwise(g.binary(conv3(g, i, wt, b), conv3(g, i, w2), op="add"), act="relu")

        ref = F.relu(conv + F.conv2d(tx, t64(w2), padding=1))
    elif chain == "spatial_const":  # per-pixel constant broadcast over N and C

        def build(g, i):
            return g.binary(conv3(g, i, wt, b), g.const(spatial), op="mul")

        ref = conv * t64(spatial)
    elif chain == "gap_operand":  # per-(n, c) activation operand, as in squeeze-excitation / NAFNet's SCA

        def build(g, i):
            return g.binary(conv3(g, i, wt, b), g.global_avg_pool(i), op="mul")

        ref = conv * tx.mean((2, 3), keepdim=True)
    elif chain == "hardswish_linear":

        def build(g, i):
            return g.eltwise(
                g.eltwise(conv3(g, i, wt, b), act="hardswish"), act="linear", alpha=-1.0, beta=0.0
            )

        ref = -F.hardswish(conv)
    else:  # max_min

        def build(g, i):
            return g.binary(g.binary(conv3(g, i, wt, b), i, op="max"), g.const(beta), op="min")

        ref = torch.minimum(torch.maximum(conv, tx), t64(beta))

    (out,) = run_graph(build, [x])
    close(out, ref, CONV_RTOL, conv_atol(9 * c) + 5e-6, f"fused {chain} c={c} {layout}")


@pytest.mark.parametrize("op", ["add", "div", "max"])
@pytest.mark.parametrize("bc", BROADCASTS, ids=[b[0] for b in BROADCASTS])
def test_fused_conv_broadcast_operand(op, bc, layout):
    """conv -> binary post-op with every operand broadcast (graph input or constant), then relu."""
    x = rand(2, 17, 7, 5)
    wt = weight(17, 17, 3, 3, fan_in=153)
    b = operand(bc[1](*x.shape))

    def build(g, i, *j):
        return g.eltwise(g.binary(conv3(g, i, wt), j[0] if j else g.const(b), op=op), act="relu")

    (out,) = run_graph(build, [x, b] if bc[2] else [x])
    ref = F.relu(BINOPS[op](F.conv2d(t64(x), t64(wt), padding=1), t64(b)))
    close(out, ref, CONV_RTOL, conv_atol(153), f"fused conv {op} {bc[0]} {layout}")


def test_fused_deconv_and_linear_chains(layout):
    x = rand(1, 16, 7, 5)
    wd, bd = weight(16, 8, 2, 2, fan_in=64), rand(8, seed=2)
    wl = weight(6, 16 * 35, fan_in=16 * 35, seed=3)
    shift = rand(1, 8, 1, 1, seed=4)

    def build(g, i):
        d = g.deconv2d(i, g.const(wd), bias=g.const(bd), kernel=(2, 2), stride=(2, 2))
        d = g.eltwise(g.binary(d, g.const(shift), op="add"), act="leaky_relu", alpha=0.1)
        lin = g.eltwise(g.linear(i, g.const(wl)), act="gelu_erf")
        return [d, lin]

    d, lin = run_graph(build, [x])
    ref_d = F.leaky_relu(F.conv_transpose2d(t64(x), t64(wd), t64(bd), stride=2) + t64(shift), 0.1)
    ref_l = F.gelu(F.linear(t64(x).reshape(1, -1), t64(wl))).reshape(1, 6, 1, 1)
    close(d, ref_d, CONV_RTOL, conv_atol(64) + 1e-6, f"deconv chain {layout}")
    close(lin, ref_l, CONV_RTOL, conv_atol(16 * 35) + 1e-6, f"linear chain {layout}")


def test_fused_binary_chain():
    """binary -> eltwise -> binary: the later ops are post-ops of the first binary."""
    a, b, c = rand(2, 17, 7, 5), operand((2, 17, 7, 5)), rand(1, 17, 1, 1, seed=3)

    def build(g, i, j):
        return g.binary(g.eltwise(g.binary(i, j, op="div"), act="relu"), g.const(c), op="sub")

    (out,) = run_graph(build, [a, b])
    close(out, F.relu(t32(a) / t32(b)) - t32(c), 1e-6, 1e-6, "binary chain")


def test_intermediate_used_twice_is_not_fused(layout):
    """A conv result that is both an output and a post-op candidate keeps its own value."""
    x = rand(1, 16, 13, 17)
    w = weight(16, 16, 3, 3, fan_in=144)

    def build(g, i):
        y = conv3(g, i, w)
        return [y, g.eltwise(y, act="relu"), g.binary(y, i, op="add")]

    y, r, s = run_graph(build, [x])
    ref = F.conv2d(t64(x), t64(w), padding=1)
    atol = conv_atol(144)
    close(y, ref, CONV_RTOL, atol, "conv")
    close(r, F.relu(ref), CONV_RTOL, atol, "relu(conv)")
    close(s, ref + t64(x), CONV_RTOL, atol, "conv + x")


def test_nafnet_block(layout):
    """NAFNet's block: LN -> 1x1 -> dw3x3 -> SimpleGate -> SCA (gap, 1x1, mul) -> 1x1 -> x + y*beta, then the
    FFN half (LN -> 1x1 -> SimpleGate -> 1x1 -> y + z*gamma)."""
    c, dw = 16, 32
    x = rand(2, c, 13, 17)
    p = {
        "n1w": rand(c, seed=10) * 0.2 + 1,
        "n1b": rand(c, seed=11) * 0.1,
        "c1w": weight(dw, c, 1, 1, fan_in=c, seed=12),
        "c1b": rand(dw, seed=13) * 0.1,
        "c2w": weight(dw, 1, 3, 3, fan_in=9, seed=14),
        "c2b": rand(dw, seed=15) * 0.1,
        "scaw": weight(dw // 2, dw // 2, 1, 1, fan_in=dw // 2, seed=16),
        "scab": rand(dw // 2, seed=17) * 0.1,
        "c3w": weight(c, dw // 2, 1, 1, fan_in=dw // 2, seed=18),
        "c3b": rand(c, seed=19) * 0.1,
        "beta": rand(1, c, 1, 1, seed=20),
        "n2w": rand(c, seed=21) * 0.2 + 1,
        "n2b": rand(c, seed=22) * 0.1,
        "c4w": weight(2 * c, c, 1, 1, fan_in=c, seed=23),
        "c4b": rand(2 * c, seed=24) * 0.1,
        "c5w": weight(c, c, 1, 1, fan_in=c, seed=25),
        "c5b": rand(c, seed=26) * 0.1,
        "gamma": rand(1, c, 1, 1, seed=27),
    }

    def build(g, i):
        k = {name: g.const(v) for name, v in p.items()}
        y = g.layer_norm(i, scale=k["n1w"], shift=k["n1b"], eps=1e-6)
        y = g.conv2d(y, k["c1w"], bias=k["c1b"], kernel=(1, 1))
        y = g.conv2d(y, k["c2w"], bias=k["c2b"], kernel=(3, 3), padding=(1, 1, 1, 1), groups=dw)
        y = g.simple_gate(y)
        y = g.binary(y, g.conv2d(g.global_avg_pool(y), k["scaw"], bias=k["scab"], kernel=(1, 1)), op="mul")
        y = g.conv2d(y, k["c3w"], bias=k["c3b"], kernel=(1, 1))
        y = g.binary(i, g.binary(y, k["beta"], op="mul"), op="add")
        z = g.layer_norm(y, scale=k["n2w"], shift=k["n2b"], eps=1e-6)
        z = g.simple_gate(g.conv2d(z, k["c4w"], bias=k["c4b"], kernel=(1, 1)))
        z = g.conv2d(z, k["c5w"], bias=k["c5b"], kernel=(1, 1))
        return g.binary(y, g.binary(z, k["gamma"], op="mul"), op="add")

    (out,) = run_graph(build, [x])
    q = {name: t64(v) for name, v in p.items()}
    tx = t64(x)
    y = F.conv2d(ln2d(tx, q["n1w"], q["n1b"], 1e-6), q["c1w"], q["c1b"])
    y = F.conv2d(y, q["c2w"], q["c2b"], padding=1, groups=dw)
    y = y[:, : dw // 2] * y[:, dw // 2 :]
    y = y * F.conv2d(F.adaptive_avg_pool2d(y, 1), q["scaw"], q["scab"])
    y = tx + F.conv2d(y, q["c3w"], q["c3b"]) * q["beta"]
    z = F.conv2d(ln2d(y, q["n2w"], q["n2b"], 1e-6), q["c4w"], q["c4b"])
    z = F.conv2d(z[:, :c] * z[:, c:], q["c5w"], q["c5b"])
    close(out, y + z * q["gamma"], CONV_RTOL, 2e-5, f"NAFNet block {layout}")
