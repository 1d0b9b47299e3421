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


def torchvision_resnet(b: Builder, x, prefix: str, layers, eps: float = 1e-5) -> list:
    """torchvision's ResNet body under ``prefix`` (conv1/bn1 + ReLU, 3x3/2 max pool, then ``layers`` Bottleneck
    blocks per stage, BatchNorm folded): the outputs of layer1..layer4 (strides 4, 8, 16, 32). Bottleneck: 1x1,
    3x3 (carrying the stride, v1.5), 1x1 to 4x the planes; the residual add and the last ReLU are post-ops of the
    third convolution."""
    x = b.conv_bn(x, f"{prefix}.conv1", f"{prefix}.bn1", 64, 7, stride=2, padding=3, eps=eps, act="relu")
    x = b.g.pool2d(x, kind="max", kernel=3, stride=2, padding=1)
    features, inplanes = [], 64
    for stage, blocks in enumerate(layers):
        planes = 64 << stage
        for i in range(blocks):
            p = f"{prefix}.layer{stage + 1}.{i}"
            stride = 2 if i == 0 and stage > 0 else 1
            y = b.conv_bn(x, f"{p}.conv1", f"{p}.bn1", planes, 1, eps=eps, act="relu")
            y = b.conv_bn(
                y, f"{p}.conv2", f"{p}.bn2", planes, 3, stride=stride, padding=1, eps=eps, act="relu"
            )
            y = b.conv_bn(y, f"{p}.conv3", f"{p}.bn3", planes * 4, 1, eps=eps)
            if i == 0 and (stride != 1 or inplanes != planes * 4):
                x = b.conv_bn(
                    x, f"{p}.downsample.0", f"{p}.downsample.1", planes * 4, 1, stride=stride, eps=eps
                )
            x = b.act(b.g.binary(y, x, op="add"), "relu")
        inplanes = planes * 4
        features.append(x)
    return features
