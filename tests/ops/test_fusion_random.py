"""Randomised post-op fusion: small random graphs of convolutions, element-wise and binary ops against a float64
torch reference, under every activation layout the planner may pick.

The planner folds element-wise, PReLU and binary consumers into the producing convolution as oneDNN post-ops.
The graphs below mix what makes that hard: binary operands of every broadcast kind (full tensors, 1-channel
maps, per-channel and scalar constants), operands produced in different layouts (by an element-wise op on the
NCHW input, by a Winograd convolution, by direct convolutions), chains of 1-3 post-ops, and tensors with
several consumers (which must not be fused away).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.graphs import run
from support.ops import LAYOUTS, use_layout

from msvision import _C

CASES = 40


class _Builder:
    """Grows a random graph and its float64 torch twin side by side."""

    def __init__(self, rng, channels, height, width):
        self.rng = rng
        self.g = _C.Graph()
        x = rng.standard_normal((1, channels, height, width)).astype(np.float32)
        self.inputs = [x]
        self.pool = [
            (self.g.input(channels=channels), torch.from_numpy(x).double())
        ]  # (tensor id, reference)

    def pick(self, recent_bias=0.6, channels=None):
        candidates = [t for t in self.pool if channels is None or t[1].shape[1] == channels]
        if not candidates:
            return None
        if self.rng.random() < recent_bias and (channels is None or candidates[-1] is self.pool[-1]):
            return candidates[-1]
        return candidates[self.rng.integers(len(candidates))]

    def add(self, tid, ref):
        self.pool.append((tid, ref))

    def conv(self):
        src, ref = self.pick()
        cin = ref.shape[1]
        cout = int(self.rng.choice([cin, 1, 16, 32]))
        k = int(self.rng.choice([1, 3]))
        groups = cin if (cout == cin and cin > 1 and self.rng.random() < 0.3) else 1
        w = (self.rng.standard_normal((cout, cin // groups, k, k)) / math.sqrt(cin // groups * k * k)).astype(
            np.float32
        )
        b = self.rng.standard_normal(cout).astype(np.float32) * 0.1 if self.rng.random() < 0.5 else None
        pad = k // 2
        tid = self.g.conv2d(
            src,
            self.g.const(w),
            bias=-1 if b is None else self.g.const(b),
            kernel=(k, k),
            padding=(pad,) * 4,
            groups=groups,
        )
        out = F.conv2d(
            ref,
            torch.from_numpy(w).double(),
            None if b is None else torch.from_numpy(b).double(),
            padding=pad,
            groups=groups,
        )
        self.add(tid, out)

    def eltwise(self):
        src, ref = self.pick()
        kind = self.rng.choice(["relu", "linear", "clip", "sigmoid", "leaky_relu", "tanh"])
        if kind == "relu":
            self.add(self.g.eltwise(src, act="relu"), torch.relu(ref))
        elif kind == "linear":
            a, c = float(self.rng.uniform(-2, 2)), float(self.rng.uniform(-1, 1))
            self.add(self.g.eltwise(src, act="linear", alpha=a, beta=c), ref * np.float32(a) + np.float32(c))
        elif kind == "clip":
            self.add(self.g.eltwise(src, act="clip", alpha=-1.0, beta=1.0), ref.clamp(-1, 1))
        elif kind == "sigmoid":
            self.add(self.g.eltwise(src, act="sigmoid"), torch.sigmoid(ref))
        elif kind == "tanh":
            self.add(self.g.eltwise(src, act="tanh"), torch.tanh(ref))
        else:
            self.add(self.g.eltwise(src, act="leaky_relu", alpha=0.1), F.leaky_relu(ref, 0.1))

    def binary(self):
        a, ra = self.pick()
        c = ra.shape[1]
        op = str(self.rng.choice(["add", "sub", "mul", "max", "min"]))
        kind = self.rng.choice(["full", "one_channel", "per_channel", "scalar"])
        if kind == "full":
            picked = self.pick(recent_bias=0.0, channels=c)
            if picked is None or picked[0] == a:
                kind = "per_channel"
            else:
                b, rb = picked
        if kind == "one_channel":
            picked = self.pick(recent_bias=0.0, channels=1)
            if picked is None:
                kind = "scalar"
            else:
                b, rb = picked
        if kind in ("per_channel", "scalar"):
            shape = (1, c, 1, 1) if kind == "per_channel" else (1, 1, 1, 1)
            v = self.rng.uniform(-1.5, 1.5, shape).astype(np.float32)
            b, rb = self.g.const(v), torch.from_numpy(v).double()
        fn = {
            "add": torch.add,
            "sub": torch.sub,
            "mul": torch.mul,
            "max": torch.maximum,
            "min": torch.minimum,
        }
        self.add(self.g.binary(a, b, op=op), fn[op](ra, rb))

    def finish(self):
        outputs = [self.pool[-1]]
        for t in self.pool[1:-1]:
            if self.rng.random() < 0.2:
                outputs.append(t)
        for tid, _ in outputs:
            self.g.output(tid)
        self.g.finalize()
        return [ref for _, ref in outputs]


def _random_graph(seed):
    rng = np.random.default_rng(seed)
    channels = int(rng.choice([1, 3, 8, 16, 32]))
    size = int(rng.choice([7, 13, 24, 33]))
    b = _Builder(rng, channels, size, size + int(rng.integers(0, 5)))
    for _ in range(int(rng.integers(3, 9))):
        r = rng.random()
        if r < 0.35:
            b.conv()
        elif r < 0.6:
            b.eltwise()
        else:
            b.binary()
    return b, b.finish()


@pytest.mark.parametrize("winograd", ["1", "0"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", range(CASES))
def test_random_fused_graph_matches_torch(seed, layout, winograd, monkeypatch):
    use_layout(layout, monkeypatch)
    monkeypatch.setenv("MSVISION_WINOGRAD", winograd)
    builder, refs = _random_graph(seed)
    outs = run(builder.g, builder.inputs, threads=1)
    for i, (ours, ref) in enumerate(zip(outs, refs)):
        ref = ref.numpy()
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=2e-5 * scale, err_msg=f"seed {seed} output {i}")


def _fused_chain(seed):
    """conv(x) followed by 1-3 post-op candidates whose binary operands come from producers that lay their
    results out differently: x itself (NCHW), an element-wise op on x (NCHW), a 1x1 and a 3x3 convolution of x
    (the latter Winograd when eligible), a 1-channel convolution (broadcast over channels), constants."""
    rng = np.random.default_rng(1000 + seed)
    c = int(rng.choice([3, 8, 16, 32]))
    size = int(rng.choice([9, 20, 33]))
    b = _Builder(rng, c, size, size)
    x = b.pool[0]
    operands = [x]
    b.eltwise()
    operands.append(b.pool[-1])
    for k in (1, 3):
        w = (rng.standard_normal((c, c, k, k)) / math.sqrt(c * k * k)).astype(np.float32)
        tid = b.g.conv2d(x[0], b.g.const(w), kernel=(k, k), padding=(k // 2,) * 4)
        operands.append((tid, F.conv2d(x[1], torch.from_numpy(w).double(), padding=k // 2)))
    w1 = (rng.standard_normal((1, c, 1, 1)) / math.sqrt(c)).astype(np.float32)
    one = (b.g.conv2d(x[0], b.g.const(w1), kernel=(1, 1)), F.conv2d(x[1], torch.from_numpy(w1).double()))
    w = (rng.standard_normal((c, c, 3, 3)) / math.sqrt(9 * c)).astype(np.float32)
    tid = b.g.conv2d(x[0], b.g.const(w), kernel=(3, 3), padding=(1, 1, 1, 1))
    ref = F.conv2d(x[1], torch.from_numpy(w).double(), padding=1)
    fn = {"add": torch.add, "mul": torch.mul, "sub": torch.sub}
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(["full", "full", "one_channel", "per_channel", "relu"])
        if kind == "relu":
            tid, ref = b.g.eltwise(tid, act="relu"), torch.relu(ref)
            continue
        op = str(rng.choice(list(fn)))
        if kind == "full":
            oid, oref = operands[rng.integers(len(operands))]
        elif kind == "one_channel":
            oid, oref = one
        else:
            v = rng.uniform(-1.5, 1.5, (1, c, 1, 1)).astype(np.float32)
            oid, oref = b.g.const(v), torch.from_numpy(v).double()
        tid, ref = b.g.binary(tid, oid, op=op), fn[op](ref, oref)
    b.g.output(tid)
    b.g.finalize()
    return b, [ref]


@pytest.mark.parametrize("winograd", ["1", "0"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", range(CASES))
def test_random_fused_chain_matches_torch(seed, layout, winograd, monkeypatch):
    use_layout(layout, monkeypatch)
    monkeypatch.setenv("MSVISION_WINOGRAD", winograd)
    builder, (ref,) = _fused_chain(seed)
    (ours,) = run(builder.g, builder.inputs, threads=1)
    ref = ref.numpy()
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=2e-5 * scale, err_msg=f"seed {seed}")


def test_two_binary_operands_in_different_layouts():
    """The reported case: a conv with two fused binary operands, one NCHW (an element-wise op on the input), one
    produced by a Winograd convolution in NHWC. The planner used to describe the post-ops with one layout
    and hand the reference convolution buffers in another (max error 19.6)."""
    rng = np.random.RandomState(0)
    c = 16
    x = rng.randn(1, c, 32, 32).astype(np.float32)
    w1 = (rng.randn(c, c, 3, 3) * 0.3).astype(np.float32)
    w2 = (rng.randn(c, c, 3, 3) * 0.3).astype(np.float32)
    g = _C.Graph()
    i = g.input(channels=c)
    conv1 = g.conv2d(i, g.const(w1), kernel=(3, 3), padding=(1, 1, 1, 1))
    conv2 = g.conv2d(i, g.const(w2), kernel=(3, 3), padding=(1, 1, 1, 1))
    g.output(
        g.binary(g.binary(conv1, g.eltwise(i, act="linear", alpha=2.0, beta=0.0), op="add"), conv2, op="add")
    )
    g.finalize()
    tx = torch.from_numpy(x).double()
    ref = F.conv2d(tx, torch.from_numpy(w1).double(), padding=1) + 2 * tx
    ref = ref + F.conv2d(tx, torch.from_numpy(w2).double(), padding=1)
    np.testing.assert_allclose(run(g, [x], threads=1)[0], ref.numpy(), rtol=1e-5, atol=1e-4)
