"""GPEN (ModelScope ``damo/cv_gpen_image-portrait-enhancement``, and ``...-hires`` at 1024): model directory ->
C-core graph.

The weights are ``pytorch_model.pt``, the flat state dict of ModelScope's ``FullGenerator(size, 512, 8, 2,
narrow=1)`` (image_portrait_enhancement/gpen.py, a StyleGAN2 generator fed by a convolutional encoder), loaded
strictly. The graph (:class:`GPEN`) maps one (1, size, size, 3) normalised RGB image ((x / 255 - 0.5) / 0.5, NHWC)
to the enhanced image (1, size, size, 3) in the same range (the generator's ``out``; the latents are not returned).

Lowering: the style is one vector per image, so each modulated convolution is an input-channel scale by
s = modulation(latent), a convolution with the constant weight * scale, and demodulation as an output-channel
scale rsqrt(s^2 . W2 + 1e-8) with W2[o, i] = scale^2 sum_k w[o, i, k]^2 folded at load. FusedLeakyReLU's gain
sqrt(2) is folded into the weights (sqrt(2) leaky(z) = leaky(sqrt(2) z)); Blur / Upsample are depthwise 4x4
(de)convolutions with the state dict's kernels; the noise maps are the encoder's features (FullGenerator.forward).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidInputError
from ..graph import Builder
from ..utils.constant import ModelFile
from .base import Model, torch_state_dict, weight_file

SIZE = 512  # 1024 for the hires model
STYLE_DIM = 512
N_MLP = 8
CHANNEL_MULTIPLIER = 2
NARROW = 1
LR_MLP = 0.01
EPS = 1e-8  # PixelNorm and demodulation
SQRT2 = math.sqrt(2.0)
LRELU = ("leaky_relu", 0.2)


def channels(res: int, channel_multiplier: int = CHANNEL_MULTIPLIER, narrow: float = NARROW) -> int:
    """FullGenerator's channel count at resolution ``res``."""
    cm = channel_multiplier
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm}
    base.update({1024: 16 * cm, 2048: 8 * cm})
    return int(base[res] * narrow)


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


class GPEN(Model):
    """ModelScope's GPEN ``FullGenerator``: ``run(x)`` maps (1, size, size, 3) float32 (NHWC, normalised RGB) to
    [the image (1, size, size, 3)]. The input must be exactly size x size (the graph input's shape is fixed)."""

    network = "gpen"
    layout = "nhwc"

    def __init__(
        self,
        model_dir: str,
        config: dict | None,
        threads: int,
        *,
        size: int = SIZE,
        style_dim: int = STYLE_DIM,
        n_mlp: int = N_MLP,
        channel_multiplier: int = CHANNEL_MULTIPLIER,
        narrow: float = NARROW,
        **options,
    ) -> None:
        if not (16 <= size <= 2048 and size & (size - 1) == 0):
            raise ValueError(f"gpen: size must be a power of two in [16, 2048], got {size}")
        self.size = size
        self.log_size = size.bit_length() - 1
        self.style_dim = style_dim
        self.n_mlp = n_mlp
        self.channel_multiplier = channel_multiplier
        self.narrow = narrow
        super().__init__(model_dir, config, threads, **options)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        want = (1, self.size, self.size, 3)
        if getattr(x, "shape", None) != want:
            raise InvalidInputError(
                f"gpen: the input must be {want} (NHWC), got {getattr(x, 'shape', type(x))}"
            )
        return super().run(x)

    def read_weights(self, model_dir, config):
        path = weight_file(model_dir, ModelFile.TORCH_MODEL_FILE)
        return torch_state_dict(path, param_key=None), path

    def ch(self, res: int) -> int:
        return channels(res, self.channel_multiplier, self.narrow)

    def build(self, b: Builder):
        x = b.g.input(shape=(1, 3, self.size, self.size))
        features = self._encoder(b, x)
        latent = self._style(b, self._final_linear(b, features[-1]))
        noise = {self.size >> k: f for k, f in enumerate(features)}  # resolution -> encoder feature
        return [self._generator(b, latent, noise)]

    # Encoder (ConvLayer = [Blur] + EqualConv2d + FusedLeakyReLU) and the mapping network.

    def _fused_conv(self, b: Builder, x, prefix: str, bias: str, cout: int, k: int, stride: int = 1):
        """EqualConv2d (no bias) + FusedLeakyReLU, the gain folded in."""
        cin = b.channels(x)
        w = b.w.take(f"{prefix}.weight", (cout, cin, k, k)) * np.float32(SQRT2 / math.sqrt(cin * k * k))
        bias = b.w.take(f"{bias}.bias", (cout,)) * np.float32(SQRT2)
        y = b.g.conv2d(x, b.g.const(_f32(w)), bias=b.g.const(_f32(bias)), stride=stride)  # padding 0 here
        return b.act(y, LRELU)

    def _blur(self, b: Builder, x, name: str, pad: int):
        """upfirdn2d(x, kernel, pad=(pad, pad)): a depthwise correlation with the flipped kernel."""
        c = b.channels(x)
        k = b.w.take(name, (4, 4))[::-1, ::-1]
        w = _f32(np.broadcast_to(k, (c, 1, 4, 4)))
        return b.g.conv2d(x, b.g.const(w), padding=pad, groups=c)

    def _encoder(self, b: Builder, x) -> list:
        """ecd0 .. ecd{log_size - 2}: the features at resolutions size, size / 2, ..., 4."""
        x = self._fused_conv(b, x, "ecd0.0.0", "ecd0.0.1", self.ch(self.size), 1)
        features = [x]
        for k in range(1, self.log_size - 1):
            x = self._blur(b, x, f"ecd{k}.0.0.kernel", pad=2)
            x = self._fused_conv(b, x, f"ecd{k}.0.1", f"ecd{k}.0.2", self.ch(self.size >> k), 3, stride=2)
            features.append(x)
        return features

    def _equal_linear(self, b: Builder, x, prefix: str, out: int, lr_mul: float = 1.0, act: bool = False):
        """EqualLinear on (1, F, ...) x -> (1, out, 1, 1); with ``act``, fused_leaky_relu (gain folded in)."""
        g = b.g
        fan_in = math.prod(g.shape(x)[1:])
        gain = SQRT2 if act else 1.0
        w = b.w.take(f"{prefix}.weight", (out, fan_in)) * np.float32(gain * lr_mul / math.sqrt(fan_in))
        bias = b.w.take(f"{prefix}.bias", (out,)) * np.float32(gain * lr_mul)
        y = g.linear(x, g.const(_f32(w)), bias=g.const(_f32(bias)))
        return b.act(y, LRELU) if act else y

    def _final_linear(self, b: Builder, x):
        # the core's linear flattens (1, C, 4, 4) in NCHW order, as torch's view(N, -1)
        return self._equal_linear(b, x, "final_linear.0", self.style_dim, act=True)

    def _style(self, b: Builder, z):
        """PixelNorm (z * rsqrt(mean(z^2) + eps)) + n_mlp EqualLinear(lr_mul 0.01, fused_lrelu)."""
        g, d = b.g, self.style_dim
        mean = g.linear(
            g.eltwise(z, act="square"),
            g.const(np.full((1, d), 1.0 / d, np.float32)),
            bias=g.const(np.full(1, EPS, np.float32)),
        )
        z = g.binary(z, g.eltwise(mean, act="pow", alpha=1.0, beta=-0.5), op="mul")
        for i in range(1, self.n_mlp + 1):
            z = self._equal_linear(b, z, f"generator.style.{i}", d, lr_mul=LR_MLP, act=True)
        return z

    # Generator.

    def _modulation(self, b: Builder, latent, prefix: str, cin: int):
        """s = EqualLinear(style_dim -> cin)(latent): (1, cin, 1, 1)."""
        return self._equal_linear(b, latent, f"{prefix}.conv.modulation", cin)

    def _styled_conv(self, b: Builder, xs, s, prefix: str, cout: int, noise, upsample: bool, scale_out=None):
        """StyledConv on xs = x * s: modulated 3x3 conv (demodulated; for ``upsample``, the transposed conv
        stride 2 then Blur), NoiseInjection (concat with noise.weight * the encoder feature), FusedLeakyReLU over
        the 2 cout channels. ``scale_out`` (1, 2 cout, 1, 1): the next layer's input scale, applied here."""
        g = b.g
        cin = b.channels(xs)
        w = b.w.take(f"{prefix}.conv.weight", (1, cout, cin, 3, 3))[0].astype(np.float64) / math.sqrt(cin * 9)
        w2 = (w * w).sum(axis=(2, 3))  # demod = rsqrt(s^2 . w2 + eps), times the gain sqrt(2)
        demod = g.linear(
            g.eltwise(s, act="square"), g.const(_f32(w2)), bias=g.const(np.full(cout, EPS, np.float32))
        )
        demod = g.eltwise(demod, act="pow", alpha=SQRT2, beta=-0.5)
        if upsample:  # torch's conv_transpose2d weight (in, out, k, k); Blur pad (1, 1)
            y = g.deconv2d(xs, g.const(_f32(w.transpose(1, 0, 2, 3))), stride=2)
            y = self._blur(b, y, f"{prefix}.conv.blur.kernel", pad=1)
        else:
            y = g.conv2d(xs, g.const(_f32(w)), padding=1)
        bias = b.w.take(f"{prefix}.activate.bias", (2 * cout,)) * np.float32(SQRT2)
        nw = float(b.w.take(f"{prefix}.noise.weight", (1,))[0])
        y = g.binary(y, demod, op="mul")
        y = b.act(g.binary(y, g.const(_f32(bias[:cout].reshape(1, cout, 1, 1))), op="add"), LRELU)
        # the noise half: leaky(sqrt(2) (noise.weight * feature + bias)) as a depthwise 1x1 conv
        n = g.conv2d(
            noise,
            g.const(np.full((cout, 1, 1, 1), nw * SQRT2, np.float32)),
            bias=g.const(_f32(bias[cout:])),
            groups=cout,
        )
        n = b.act(n, LRELU)
        if scale_out is not None:
            y = g.binary(y, g.slice(scale_out, begin=(0, 0, 0, 0), end=(None, cout, None, None)), op="mul")
            n = g.binary(n, g.slice(scale_out, begin=(0, cout, 0, 0), end=(None, None, None, None)), op="mul")
        return g.concat([y, n], axis=1)

    def _to_rgb(self, b: Builder, hs, prefix: str, skip):
        """ToRGB on hs = h * s: modulated 1x1 conv (no demodulation) + bias + Upsample(skip) (upfirdn2d up 2,
        pad (2, 1): a depthwise transposed conv stride 2, padding 1, with the kernel unflipped)."""
        g = b.g
        cin = b.channels(hs)
        w = b.w.take(f"{prefix}.conv.weight", (1, 3, cin, 1, 1))[0] * np.float32(1 / math.sqrt(cin))
        bias = b.w.take(f"{prefix}.bias", (1, 3, 1, 1)).reshape(3)
        y = g.conv2d(hs, g.const(_f32(w)), bias=g.const(bias))
        if skip is None:
            return y
        k = b.w.take(f"{prefix}.upsample.kernel", (4, 4))
        up = g.deconv2d(skip, g.const(_f32(np.broadcast_to(k, (3, 1, 4, 4)))), stride=2, padding=1, groups=3)
        return g.binary(y, up, op="add")

    def _generator(self, b: Builder, latent, noise: dict):
        g = b.g
        c = self.ch(4)
        s = self._modulation(b, latent, "generator.conv1", c)
        x = g.binary(g.const(b.w.take("generator.input.input", (1, c, 4, 4))), s, op="mul")
        h = self._styled_conv(b, x, s, "generator.conv1", c, noise[4], upsample=False)
        s_rgb = self._modulation(b, latent, "generator.to_rgb1", 2 * c)
        skip = self._to_rgb(b, g.binary(h, s_rgb, op="mul"), "generator.to_rgb1", None)
        for i in range(self.log_size - 2):
            res, cin, c = 8 << i, c, self.ch(8 << i)
            up, same, rgb = (
                f"generator.convs.{2 * i}",
                f"generator.convs.{2 * i + 1}",
                f"generator.to_rgbs.{i}",
            )
            last = res == self.size
            s_up = self._modulation(b, latent, up, 2 * cin)
            s_same = self._modulation(b, latent, same, 2 * c)
            s_rgb = self._modulation(b, latent, rgb, 2 * c)
            hs = self._styled_conv(
                b, g.binary(h, s_up, op="mul"), s_up, up, c, noise[res], True, scale_out=s_same
            )
            # h feeds ToRGB and the next level (each with its own scale), except at the last level
            h = self._styled_conv(
                b, hs, s_same, same, c, noise[res], False, scale_out=s_rgb if last else None
            )
            skip = self._to_rgb(b, h if last else g.binary(h, s_rgb, op="mul"), rgb, skip)
        return skip
