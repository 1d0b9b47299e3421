"""Layers shared by the network builders, written once: convolutions with their weights by name, BatchNorm folded
into the preceding convolution at load time, activations by name."""

from __future__ import annotations

import numpy as np

from .weights import Weights


def fold_batch_norm(weight, bias, gamma, beta, mean, var, eps):
    """Conv weight (O, ...) and bias (O) with an inference BatchNorm after it folded in, in float32:
    w' = w * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta."""
    scale = gamma / np.sqrt(var + np.float32(eps))
    w = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    b = ((bias if bias is not None else np.float32(0)) - mean) * scale + beta
    return np.ascontiguousarray(w, np.float32), np.ascontiguousarray(b, np.float32)


class Builder:
    """A graph under construction and the weights it is built from: ``b.g`` is the graph binding (one method
    per op), ``b.w`` the :class:`Weights`; the methods below read weights by their checkpoint names."""

    def __init__(self, graph, weights: Weights) -> None:
        self.g = graph
        self.w = weights

    def channels(self, x) -> int:
        return self.g.shape(x)[1]

    def const(self, name: str, shape) -> int:
        """The weight ``name`` (of ``shape``) as a graph constant."""
        return self.g.const(self.w.take(name, shape))

    def act(self, x, act):
        """``act``: None, an activation name ('relu', 'sigmoid', ...) or (name, alpha[, beta])."""
        if act is None:
            return x
        name, *args = (act,) if isinstance(act, str) else act
        return self.g.eltwise(x, act=name, **dict(zip(("alpha", "beta"), args)))

    def conv(self, x, prefix, out, k, *, stride=1, padding=0, dilation=1, groups=1, bias=True, act=None):
        """``<prefix>.weight`` (out, in / groups, k, k) and, with ``bias``, ``<prefix>.bias`` (out)."""
        cin = self.channels(x)
        w = self.const(f"{prefix}.weight", (out, cin // groups, k, k))
        b = self.const(f"{prefix}.bias", (out,)) if bias else None
        y = self.g.conv2d(x, w, bias=b, stride=stride, padding=padding, dilation=dilation, groups=groups)
        return self.act(y, act)

    def conv_bn(
        self,
        x,
        conv,
        bn,
        out,
        k,
        *,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        conv_bias=False,
        eps=1e-5,
        act=None,
    ):
        """Convolution ``conv`` followed by BatchNorm ``bn`` (weight, bias, running_mean, running_var), folded at
        load time into one convolution; ``bn.num_batches_tracked`` (a training counter) is accepted."""
        cin = self.channels(x)
        weight = self.w.take(f"{conv}.weight", (out, cin // groups, k, k))
        bias = self.w.take(f"{conv}.bias", (out,)) if conv_bias else None
        gamma, beta, mean, var = (
            self.w.take(f"{bn}.{p}", (out,)) for p in ("weight", "bias", "running_mean", "running_var")
        )
        self.w.skip(f"{bn}.num_batches_tracked", ())
        wf, bf = fold_batch_norm(weight, bias, gamma, beta, mean, var, eps)
        y = self.g.conv2d(
            x,
            self.g.const(wf),
            bias=self.g.const(bf),
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
        )
        return self.act(y, act)
