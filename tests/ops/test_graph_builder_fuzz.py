"""Every op method of the graph binding called with extreme and invalid arguments (random, seeded): each call
builds a node or raises an exception naming the problem, never crashes; graphs that build then plan and run on
random small (and empty or huge) inputs, again with exceptions only."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.graphs import run

from msvision import _C
from msvision.errors import GraphError

INT_VALUES = [0, 1, 2, 3, -1, -2, 7, 16, 1024, 1025, 65536, 65537, 2**31 - 1, -(2**31), 2**40, True]
FLOAT_VALUES = [0.0, 1.0, -1.0, 2.0, 0.5, 1e-12, 1e30, -1e30, math.inf, -math.inf, math.nan, 1024.0, 1025.0]
EXPECTED = (ValueError, TypeError, MemoryError, NotImplementedError, OverflowError)


def _value(rng, kind, choices):
    pick = lambda xs: xs[rng.integers(len(xs))]  # noqa: E731
    if kind in ("int", "bool"):
        return pick(INT_VALUES)
    if kind in ("float", "scale"):
        if kind == "scale" and rng.random() < 0.5:
            return (pick(FLOAT_VALUES), pick(FLOAT_VALUES))
        return pick(FLOAT_VALUES)
    if kind == "enum":
        return pick(choices + ["bogus", ""]) if rng.random() < 0.9 else pick(INT_VALUES)
    if kind in ("pair", "size"):
        n = int(rng.choice([1, 2, 2, 2, 3])) if kind == "pair" else 2
        vals = [pick(INT_VALUES) for _ in range(n)]
        return vals[0] if n == 1 else tuple(vals)
    if kind == "padding":
        n = int(rng.choice([1, 2, 3, 4, 4, 5]))
        vals = [pick(INT_VALUES) for _ in range(n)]
        return vals[0] if n == 1 else tuple(vals)
    if kind == "dims":
        return tuple(None if rng.random() < 0.3 else pick(INT_VALUES) for _ in range(int(rng.integers(0, 7))))
    raise AssertionError(kind)


def _tensors(g, rng):
    """Activations and constants of assorted ranks and shapes, plus ids that are not tensors."""
    x = g.input(channels=int(rng.choice([1, 3, 4, 16])))
    ids = [x, g.input(shape=(None, 5)), g.eltwise(x, act="relu")]
    for shape in [
        (4,),
        (1,),
        (3,),
        (1, 3, 1, 1),
        (4, 3, 3, 3),
        (3, 1, 3, 3),
        (3, 4, 2, 2),
        (2, 12),
        (1, 1, 1, 1),
    ]:
        ids.append(g.const(rng.standard_normal(shape).astype(np.float32)))
    return ids + [-1, -2, 10**6, 2**31 - 1]


@pytest.mark.parametrize("seed", range(24))
def test_every_builder_method_with_extreme_arguments(seed):
    rng = np.random.default_rng(seed)
    built = failed = 0
    for _ in range(300):
        op = _C.Graph.ops[rng.integers(len(_C.Graph.ops))]
        sig = _C.Graph.signature(op)
        g = _C.Graph()
        ids = _tensors(g, rng)
        args = []
        for name in sig["inputs"]:
            if name.endswith("*"):
                args.append([ids[rng.integers(len(ids))] for _ in range(int(rng.integers(0, 18)))])
            elif name.endswith("?") and rng.random() < 0.3:
                args.append(None)
            else:
                args.append(ids[rng.integers(len(ids))])
        kwargs = {
            name: _value(rng, kind, choices) for name, kind, choices in sig["fields"] if rng.random() < 0.7
        }
        try:
            y = getattr(g, op)(*args, **kwargs)
        except EXPECTED as e:
            assert str(e), f"{op}: an error without a message"
            failed += 1
            continue
        built += 1
        g.output(y)
        g.finalize()
        for shape in [(1, 3, 5, 5), (2, 16, 1, 1), (1, 4, 33, 2), (1, 1, 1, 1)]:
            inputs = [
                rng.standard_normal(shape).astype(np.float32),
                rng.standard_normal((2, 5)).astype(np.float32),
            ]
            try:
                run(g, inputs)
            except EXPECTED:
                pass
    assert built >= 3 and failed >= 100, (built, failed)  # both paths exercised


def test_reported_overflows_are_errors():
    g = _C.Graph()
    x = g.input(channels=3)
    with pytest.raises(GraphError, match="pixel_shuffle: shuffle factor must lie in 1..1024"):
        g.pixel_shuffle(x, factor=65536)  # r * r overflowed to 0: a SIGFPE
    g = _C.Graph()
    x = g.input(channels=3)
    with pytest.raises(GraphError, match="padding must lie in 0..1048576"):
        g.pad(x, padding=(2**31 - 1, 2**31 - 1, 0, 0))
    g = _C.Graph()
    x = g.input(channels=3)
    g.output(g.pad(x, padding=(1 << 20, 1 << 20, 1 << 20, 1 << 20)))  # fine while sizes are unknown...
    g.finalize()
    with pytest.raises(ValueError, match="would exceed 16 GiB"):  # ...but 2M x 2M x 3 floats is refused
        run(g, [np.zeros((1, 3, 3, 3), np.float32)])
