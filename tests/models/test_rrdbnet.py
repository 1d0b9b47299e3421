"""RRDBNet x2 (GPEN portrait enhancement's super-resolution stage): msvision's graph against ModelScope's own
RRDBNet class (random weights) on the same input, and the weight selection of ModelScope's pipeline
(``torch.load(path)['params_ema']``, ``load_state_dict(strict=True)``).

Criterion: max abs diff <= 1e-4 x max |torch output| (float rounding: Winograd convolutions, the 0.2 folded into
conv5's weights).
"""

import os

import numpy as np
import pytest

from msvision.errors import InvalidModelError
from msvision.models.rrdbnet import RRDBNet

torch = pytest.importorskip("torch")

SETTINGS = dict(
    num_in_ch=3, num_out_ch=3, num_feat=32, num_block=23, num_grow_ch=32, scale=2
)  # the pipeline's
WEIGHTS = ("super_resolution", "realesrnet_x2.pth")


def _torch_net(seed=0):
    from modelscope.models.cv.super_resolution.rrdbnet_arch import RRDBNet as TorchRRDBNet

    torch.manual_seed(seed)
    net = TorchRRDBNet(**SETTINGS).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias"):  # ModelScope's init zeroes the dense blocks' biases
                p.normal_(0, 0.05)
    return net


def _save(model_dir, checkpoint):
    path = os.path.join(model_dir, *WEIGHTS)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(checkpoint, path)
    return str(model_dir)


@pytest.fixture(scope="module")
def net():
    return _torch_net()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, net):
    return _save(tmp_path_factory.mktemp("rrdbnet"), {"params_ema": net.state_dict(), "params": {}})


@pytest.fixture(scope="module")
def model(model_dir):
    return RRDBNet(model_dir, None, threads=2)


def _reference(net, x):
    with torch.no_grad():
        return net(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("size", [(32, 48), (64, 40), (2, 6)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_matches_torch(model, net, size):
    h, w = size
    x = np.random.default_rng(h * w).random((1, h, w, 3), dtype=np.float32)
    (out,) = model.run(x)
    ref = _reference(net, x)
    assert out.shape == ref.shape == (1, 2 * h, 2 * w, 3)
    scale = np.abs(ref).max()
    assert scale > 0.1
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * scale)


def test_post_ops_are_fused(model):
    model.run(np.zeros((1, 8, 8, 3), np.float32))
    steps = model.steps()
    # per dense block: 4 convolutions + 4 concats + conv5, activations and residuals all fused; per RRDB one
    # element-wise step and one add (0.2 x + the RRDB input, the residual of rdb3's conv5)
    assert sum(s.startswith("conv2d") for s in steps) == 23 * 3 * 5 + 6
    assert sum(s.startswith("eltwise") for s in steps) == 23
    assert sum(s.startswith("binary") for s in steps) == 23
    # every 3x3 convolution with channels in multiples of 16 is a Winograd one: all but the first (12 input
    # channels) and the last (3 outputs)
    model.run(np.zeros((1, 64, 64, 3), np.float32))
    convs = [s for s in model.steps() if s.startswith("conv2d")]
    assert sum("winograd" in s for s in convs) == len(convs) - 2, convs


def test_missing_and_misshapen_weights(net, tmp_path):
    sd = net.state_dict()
    lacking = {k: v for k, v in sd.items() if k != "body.7.rdb2.conv3.weight"}
    with pytest.raises(InvalidModelError, match=r"body\.7\.rdb2\.conv3\.weight"):
        RRDBNet(_save(tmp_path / "lacking", {"params_ema": lacking}), None, threads=1)
    misshapen = dict(sd, **{"conv_last.bias": torch.zeros(4)})
    with pytest.raises(InvalidModelError, match=r"conv_last\.bias.*\(4\).*\(3\)"):
        RRDBNet(_save(tmp_path / "misshapen", {"params_ema": misshapen}), None, threads=1)
    extra = dict(sd, **{"conv_extra.weight": torch.zeros(3)})
    with pytest.raises(InvalidModelError, match=r"conv_extra\.weight"):
        RRDBNet(_save(tmp_path / "extra", {"params_ema": extra}), None, threads=1)


def test_checkpoint_selection_is_modelscopes(net, tmp_path):
    """ModelScope indexes ['params_ema'] and loads strictly, without stripping 'module.': a checkpoint without
    that entry (a plain state dict, or one under 'params') and a 'module.'-prefixed one fail there, and here."""
    sd = net.state_dict()
    probe = _torch_net(seed=1)
    for name, checkpoint in (("plain", sd), ("params", {"params": sd})):
        model_dir = _save(tmp_path / name, checkpoint)
        with pytest.raises(KeyError):
            torch.load(os.path.join(model_dir, *WEIGHTS), weights_only=True)["params_ema"]
        with pytest.raises(InvalidModelError, match="params_ema"):
            RRDBNet(model_dir, None, threads=1)
    prefixed = {"params_ema": {f"module.{k}": v for k, v in sd.items()}}
    model_dir = _save(tmp_path / "prefixed", prefixed)
    with pytest.raises(RuntimeError, match="Missing key"):
        probe.load_state_dict(prefixed["params_ema"], strict=True)
    with pytest.raises(InvalidModelError, match="missing weight 'conv_first.weight'"):
        RRDBNet(model_dir, None, threads=1)
    model_dir = _save(tmp_path / "not_a_dict", {"params_ema": [1, 2]})
    with pytest.raises(InvalidModelError, match="params_ema"):
        RRDBNet(model_dir, None, threads=1)
