"""Conformance: msvision's GPEN network against ModelScope's own ``FullGenerator(size, 512, 8, 2, narrow=1)``
with random weights (every zero-initialised parameter randomised too: noise weights, biases) on the same random
normalised input.

Criterion: max abs diff <= 1e-3 * max |output| + 1e-4 (measured: 2e-5 to 3e-5 for outputs of scale 6 to 10, i.e.
~4e-6 relative, at sizes 64, 128 and 512); sizes 64 and 128 (both seeds) and one run at 512 (~280 MB of weights).
"""

import numpy as np
import pytest
import torch

from msvision.errors import InvalidInputError, InvalidModelError
from msvision.models.gpen import GPEN

torch.set_num_threads(2)


def _full_generator(size, seed):
    from modelscope.models.cv.image_portrait_enhancement.gpen import FullGenerator

    torch.manual_seed(seed)
    net = FullGenerator(size, 512, 8, 2, narrow=1).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("noise.weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)
    return net


def _save(net, model_dir):
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), model_dir / "pytorch_model.pt")
    return str(model_dir)


@pytest.fixture(scope="module", params=[64, 128], ids=lambda s: f"size{s}")
def case(request, tmp_path_factory):
    size = request.param
    net = _full_generator(size, seed=size)
    model_dir = _save(net, tmp_path_factory.mktemp(f"gpen{size}"))
    return size, net, model_dir


def _input(size, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (1, size, size, 3)).astype(np.float32)


def test_matches_modelscope(case):
    size, net, model_dir = case
    ours = GPEN(model_dir, None, threads=2, size=size)
    for seed in (0, 1):
        x = _input(size, seed)
        (y,) = ours.run(x)
        with torch.no_grad():
            ref = net(torch.from_numpy(x).permute(0, 3, 1, 2))[0].permute(0, 2, 3, 1).numpy()
        assert y.shape == (1, size, size, 3)
        err, scale = float(np.abs(y - ref).max()), float(np.abs(ref).max())
        assert err <= 1e-3 * scale + 1e-4, f"size {size}: max abs diff {err:.3g}, output scale {scale:.3g}"


def test_matches_modelscope_512(tmp_path):
    """The released size (one run: ~15 s on 2 threads, most of it torch's forward)."""
    net = _full_generator(512, seed=5)
    ours = GPEN(_save(net, tmp_path), None, threads=2, size=512)
    x = _input(512, seed=2)
    (y,) = ours.run(x)
    with torch.no_grad():
        ref = net(torch.from_numpy(x).permute(0, 3, 1, 2))[0].permute(0, 2, 3, 1).numpy()
    err, scale = float(np.abs(y - ref).max()), float(np.abs(ref).max())
    assert err <= 1e-3 * scale + 1e-4, f"size 512: max abs diff {err:.3g}, output scale {scale:.3g}"


def test_wrong_input_size(case):
    size, _, model_dir = case
    ours = GPEN(model_dir, None, threads=1, size=size)
    with pytest.raises(InvalidInputError, match=rf"\(1, {size}, {size}, 3\)"):
        ours.run(_input(size // 2))
    with pytest.raises(ValueError):
        ours.run(np.zeros((1, size, size + 1, 3), np.float32))


def test_model_size_mismatch(case):
    size, _, model_dir = case
    with pytest.raises(InvalidModelError, match="ecd0.0.0.weight"):  # a 64 checkpoint is not a 128 network
        GPEN(model_dir, None, threads=1, size=size * 2)


def test_bad_weights(tmp_path):
    net = _full_generator(16, seed=3)
    state = net.state_dict()
    missing = dict(state)
    del missing["generator.convs.1.noise.weight"]
    torch.save(missing, tmp_path / "pytorch_model.pt")
    with pytest.raises(InvalidModelError, match="generator.convs.1.noise.weight"):
        GPEN(str(tmp_path), None, threads=1, size=16)
    wrong = dict(state)
    wrong["generator.to_rgbs.0.conv.modulation.weight"] = torch.zeros(1024, 511)
    torch.save(wrong, tmp_path / "pytorch_model.pt")
    with pytest.raises(InvalidModelError, match=r"generator.to_rgbs.0.conv.modulation.weight.*\(1024, 512\)"):
        GPEN(str(tmp_path), None, threads=1, size=16)
    extra = dict(state)
    extra["generator.extra"] = torch.zeros(3)
    torch.save(extra, tmp_path / "pytorch_model.pt")
    with pytest.raises(InvalidModelError, match="generator.extra"):
        GPEN(str(tmp_path), None, threads=1, size=16)


def test_bad_size():
    with pytest.raises(ValueError, match="power of two"):
        GPEN("unused", None, threads=1, size=96)
