"""Op tests against PyTorch: threads and concurrent sessions.

Tolerances and helpers: tests/support/ops.py."""

from __future__ import annotations

import threading

import torch
from support.graphs import run
from support.ops import (
    close,
    exact,
    rand,
    weight,
)

from msvision import _C

torch.set_num_threads(1)


def _threads_graph():
    x = rand(2, 16, 32, 31)
    w1, b1 = weight(32, 16, 3, 3, fan_in=144), rand(32, seed=2)
    w2 = weight(32, 1, 3, 3, fan_in=9, seed=3)
    sc, sh = rand(32, seed=4), rand(32, seed=5)

    def build(g, i):
        y = g.eltwise(
            g.conv2d(i, g.const(w1), bias=g.const(b1), kernel=(3, 3), padding=(1, 1, 1, 1)), act="gelu_erf"
        )
        y = g.layer_norm(y, scale=g.const(sc), shift=g.const(sh), eps=1e-6)
        y = g.conv2d(y, g.const(w2), kernel=(3, 3), padding=(1, 1, 1, 1), groups=32)
        y = g.resize(g.simple_gate(y), mode="bilinear", size=(0, 0), scale=(2.0, 2.0))
        return [
            y,
            g.softmax(
                g.pool2d(
                    y,
                    kind="avg_exclude_pad",
                    kernel=(3, 3),
                    ceil_mode=True,
                    stride=(2, 2),
                    padding=(1, 1, 1, 1),
                )
            ),
        ]

    g = _C.Graph()
    i = g.input(channels=16)
    for o in build(g, i):
        g.output(o)
    g.finalize()
    return g, x


def test_threads_1_and_2_agree(layout):
    g, x = _threads_graph()
    one = run(g, [x], threads=1)
    two = run(g, [x], threads=2)
    default = run(g, [x], threads=0)  # threads=0: keep the current OpenMP setting
    for a, b, c in zip(one, two, default):
        close(b, a, 1e-5, 1e-5, f"threads=2 vs 1 {layout}")
        close(c, a, 1e-5, 1e-5, f"threads=0 vs 1 {layout}")


def test_concurrent_runs_from_python_threads():
    """Two Python threads run one graph (runs serialise inside; the GIL is released) and a second graph, with
    different shapes; every result equals the sequential one."""
    g, x = _threads_graph()
    x_small = rand(1, 16, 13, 17, seed=8)
    g2, x2 = _threads_graph()
    expected = {
        "a": run(g, [x], threads=1),
        "b": run(g, [x_small], threads=1),
        "c": run(g2, [x2], threads=1),
    }
    jobs = {"a": (g, x), "b": (g, x_small), "c": (g2, x2)}
    results: dict[str, list] = {k: [] for k in jobs}
    errors = []
    start = threading.Barrier(len(jobs))

    def work(key):
        graph, inp = jobs[key]
        try:
            start.wait()
            for _ in range(4):
                results[key].append(run(graph, [inp], threads=1))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for key, runs in results.items():
        assert len(runs) == 4
        for outs in runs:
            for a, b in zip(outs, expected[key]):
                exact(a, b, f"concurrent run {key}")
