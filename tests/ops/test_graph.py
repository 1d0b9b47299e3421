"""Op tests against PyTorch: graphs: plan cache, inputs.

Tolerances and helpers: tests/support/ops.py."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from support.ops import (
    CONV_RTOL,
    close,
    conv3,
    conv_atol,
    exact,
    rand,
    run_graph,
    t64,
    weight,
)

from msvision import _C

torch.set_num_threads(1)


def test_two_outputs_and_output_order():
    x = rand(2, 16, 7, 5)
    w = weight(8, 16, 3, 3, fan_in=144)

    def build(g, i):
        y = conv3(g, i, w)
        return [g.global_avg_pool(y), g.eltwise(y, act="relu"), i]  # an input can also be an output

    a, b, c = run_graph(build, [x])
    ref = F.conv2d(t64(x), t64(w), padding=1)
    assert a.shape == (2, 8, 1, 1) and b.shape == (2, 8, 7, 5)
    close(a, ref.mean((2, 3), keepdim=True), CONV_RTOL, conv_atol(144), "output 0")
    close(b, F.relu(ref), CONV_RTOL, conv_atol(144), "output 1")
    exact(c, x, "output 2 (the input)")


def test_two_inputs_two_outputs():
    a, b = rand(1, 3, 7, 5), rand(1, 5, 7, 5, seed=2)
    outs = run_graph(lambda g, i, j: [g.concat([j, i]), g.softmax(i)], [a, b])
    exact(outs[0], np.concatenate([b, a], axis=1), "concat of two inputs")
    close(outs[1], F.softmax(t64(a), 1), 1e-5, 1e-6, "softmax")


def _shape_graph():
    """conv 3x3 stride 2 -> relu -> bilinear x2 -> + input-sized branch; valid for any H, W >= 1."""
    w, b = weight(8, 3, 3, 3, fan_in=27), rand(8, seed=2)
    g = _C.Graph()
    i = g.input(channels=3)
    y = g.eltwise(
        g.conv2d(i, g.const(w), bias=g.const(b), kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1)),
        act="relu",
    )
    g.output(y)
    g.output(g.global_avg_pool(y))
    g.finalize()

    def ref(x):
        r = F.relu(F.conv2d(t64(x), t64(w), t64(b), stride=2, padding=1))
        return r, r.mean((2, 3), keepdim=True)

    return g, ref


def test_many_shapes_plan_cache(layout):
    """10 distinct shapes (> the 8 cached plans), then the first again; re-running a cached shape creates no
    primitive; every result is right."""
    g, ref = _shape_graph()
    session = _C.Session(g, threads=1)
    shapes = [(1, 3, 7, 5), (2, 3, 7, 5), (1, 3, 13, 17), (1, 3, 1, 1), (2, 3, 32, 31), (1, 3, 5, 7),
              (1, 3, 8, 8), (2, 3, 2, 3), (1, 3, 17, 13), (1, 3, 9, 4)]  # fmt: skip
    atol = conv_atol(27)

    def check(shape, seed):
        x = rand(*shape, seed=seed)
        y, m = session.run([x])
        ry, rm = ref(x)
        close(y, ry, CONV_RTOL, atol, f"shape {shape}")
        close(m, rm, CONV_RTOL, atol, f"shape {shape} (gap)")

    assert session.primitive_count == 0
    for k, s in enumerate(shapes):
        before = session.primitive_count
        check(s, k)
        assert session.primitive_count > before, "a new shape must be planned"
    # the last 8 shapes are cached: re-running them (in any order) creates nothing
    count = session.primitive_count
    for k in (9, 2, 5, 9):
        check(shapes[k], 100 + k)
    assert session.primitive_count == count
    # the first shape was evicted (LRU): it is planned again, with the right result, then cached
    check(shapes[0], 200)
    count = session.primitive_count
    for seed in range(3):
        check(shapes[0], 300 + seed)
    assert session.primitive_count == count
    assert session.arena_bytes > 0


def test_rerun_same_shape_is_stable():
    g, ref = _shape_graph()
    session = _C.Session(g, threads=1)
    x = rand(2, 3, 13, 17)
    first = session.run([x])
    count = session.primitive_count
    for _ in range(3):
        again = session.run([x])
        for a, b in zip(first, again):
            exact(a, b, "same input, same output")
    assert session.primitive_count == count
    # a different input of the same shape reuses the plan and gives its own result
    x2 = rand(2, 3, 13, 17, seed=9)
    y, _ = session.run([x2])
    close(y, ref(x2)[0], CONV_RTOL, conv_atol(27), "second input")
    assert session.primitive_count == count


def test_non_contiguous_and_float64_inputs():
    """run() takes any array-like convertible to float32 NCHW (copies when needed)."""
    x = rand(1, 5, 7, 10)
    (ref,) = run_graph(
        lambda g, i: g.eltwise(i, act="linear", alpha=2.0, beta=1.0), [np.ascontiguousarray(x[:, :, :, ::2])]
    )
    (a,) = run_graph(lambda g, i: g.eltwise(i, act="linear", alpha=2.0, beta=1.0), [x[:, :, :, ::2]])
    (b,) = run_graph(
        lambda g, i: g.eltwise(i, act="linear", alpha=2.0, beta=1.0), [x[:, :, :, ::2].astype(np.float64)]
    )
    exact(a, ref, "strided view")
    exact(b, ref, "float64 input")
