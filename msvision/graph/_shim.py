"""TEMPORARY: the keyword graph API on top of the positional _C.Graph, while the networks move to Python.
Replaced by the C binding itself (and deleted) once the core exposes it."""

from __future__ import annotations

import numpy as np

from .._native import _C


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pad4(v):
    if isinstance(v, int):
        return (v, v, v, v)
    v = tuple(v)
    return (v[0], v[1], v[0], v[1]) if len(v) == 2 else v


class Graph:
    def __init__(self):
        self._g = _C.Graph()
        self._shapes = {}

    def _add(self, tid, shape):
        self._shapes[tid] = tuple(shape)
        return tid

    def shape(self, t):
        return self._shapes[t]

    def input(self, channels):
        return self._add(self._g.input(channels), (-1, channels, -1, -1))

    def const(self, array):
        a = np.ascontiguousarray(array, np.float32)
        return self._add(self._g.const(a), a.shape)

    def _like(self, t, x, channels=None):
        s = list(self._shapes[x])
        if channels is not None:
            s[1] = channels
        return self._add(t, s)

    def conv2d(self, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        ws = self._shapes[weight]
        t = self._g.conv2d(
            x,
            weight,
            -1 if bias is None else bias,
            ws[2:],
            stride=_pair(stride),
            padding=_pad4(padding),
            dilation=_pair(dilation),
            groups=groups,
        )
        return self._like(t, x, ws[0])

    def deconv2d(self, x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
        ws = self._shapes[weight]
        t = self._g.deconv2d(
            x,
            weight,
            -1 if bias is None else bias,
            ws[2:],
            stride=_pair(stride),
            padding=_pad4(padding),
            dilation=_pair(dilation),
            groups=groups,
            output_padding=_pair(output_padding),
        )
        return self._like(t, x, ws[1] * groups)

    def linear(self, x, weight, bias=None):
        return self._like(self._g.linear(x, weight, -1 if bias is None else bias), x, self._shapes[weight][0])

    def eltwise(self, x, act, alpha=0.0, beta=0.0):
        return self._like(self._g.eltwise(x, act, alpha, beta), x)

    def binary(self, a, b, op):
        return self._like(self._g.binary(op, a, b), a)

    def prelu(self, x, slope):
        return self._like(self._g.prelu(x, slope), x)

    def layer_norm(self, x, scale=None, shift=None, eps=1e-5):
        return self._like(
            self._g.layer_norm(x, -1 if scale is None else scale, -1 if shift is None else shift, eps), x
        )

    def group_norm(self, x, groups, scale=None, shift=None, eps=1e-5):
        return self._like(
            self._g.group_norm(
                x, groups, -1 if scale is None else scale, -1 if shift is None else shift, eps
            ),
            x,
        )

    def softmax(self, x):
        return self._like(self._g.softmax(x), x)

    def pool2d(self, x, kind, kernel, stride=1, padding=0, ceil_mode=False):
        return self._like(
            self._g.pool2d(x, kind, _pair(kernel), ceil_mode, stride=_pair(stride), padding=_pad4(padding)), x
        )

    def global_avg_pool(self, x):
        return self._like(self._g.global_avg_pool(x), x)

    def resize_like(self, x, like, mode, scale):
        sh, sw = _pair(scale) if not isinstance(scale, float) else (scale, scale)
        return self._like(self._g.resize_like(x, like, mode, float(sh), float(sw)), x)

    def concat(self, inputs, axis=1):
        assert axis == 1
        return self._like(self._g.concat(list(inputs)), inputs[0], sum(self._shapes[t][1] for t in inputs))

    def simple_gate(self, x):
        return self._like(self._g.simple_gate(x), x, self._shapes[x][1] // 2)

    def output(self, t):
        self._g.output(t)

    def finalize(self):
        self._g.finalize()

    def run(self, inputs, threads):
        return self._g.run(inputs, threads=threads)

    @property
    def primitive_count(self):
        return self._g.primitive_count

    @property
    def arena_bytes(self):
        return self._g.arena_bytes
