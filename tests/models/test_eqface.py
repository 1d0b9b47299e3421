"""EQFace face-quality assessment (GPEN portrait enhancement's face filter): msvision's graph against ModelScope's
own ``FQA`` (ResNet-100 backbone + FaceQuality head, random weights with random BatchNorm statistics, affine
parameters and PReLU slopes, so that every fold is exercised) on the same 112x112 face.

Criteria: feature max abs diff <= 1e-4 x max |feature|; quality score within 1e-5 (a probability).
msvision loads strictly where ModelScope keeps only matching keys: the loading tests pin that difference.
"""

import os

import numpy as np
import pytest

from msvision.errors import InvalidModelError
from msvision.models.eqface import EQFace

torch = pytest.importorskip("torch")

BACKBONE = ("face_quality", "eqface_backbone.pth")
QUALITY = ("face_quality", "eqface_quality.pth")


def _torch_nets(seed=0):
    from modelscope.models.cv.image_portrait_enhancement.eqface.model_resnet import FaceQuality, ResNet

    torch.manual_seed(seed)
    backbone, quality = ResNet(num_layers=100, feature_dim=512).eval(), FaceQuality(512 * 7 * 7).eval()
    with torch.no_grad():
        for name, m in [*backbone.named_modules(), *quality.named_modules()]:
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                if name.endswith("res_layer.5"):  # keep 100 layers of residuals at a moderate scale
                    m.weight.uniform_(0.05, 0.2)
            elif isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(0, 0.5)
        quality.qualtiy[3].weight.mul_(0.1)  # a score away from 0 and 1
    return backbone, quality


def _save(model_dir, backbone_sd, quality_sd):
    for parts, sd in ((BACKBONE, backbone_sd), (QUALITY, quality_sd)):
        path = os.path.join(model_dir, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save(sd, path)
    return str(model_dir)


@pytest.fixture(scope="module")
def nets():
    return _torch_nets()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, nets):
    backbone, quality = nets
    prefixed = {f"module.{k}": v for k, v in backbone.state_dict().items()}  # as DataParallel saves it
    return _save(tmp_path_factory.mktemp("eqface"), prefixed, quality.state_dict())


def _normalised(bgr):
    """get_face_quality's preprocessing: BGR -> RGB, (x - 127.5) / 128, as NHWC float32."""
    return ((bgr[None, :, :, ::-1].astype(np.float32) - np.float32(127.5)) / np.float32(128.0)).copy()


def test_matches_modelscope_fqa(model_dir):
    from modelscope.models.cv.image_portrait_enhancement.eqface.fqa import FQA

    fqa = FQA(os.path.join(model_dir, *BACKBONE), os.path.join(model_dir, *QUALITY), device="cpu")
    model = EQFace(model_dir, None, threads=2)
    rng = np.random.default_rng(0)
    for _ in range(2):
        face = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        ref_score, ref_feature = fqa.get_face_quality(face)
        feature, score = model.run(_normalised(face))
        assert feature.shape == (1, 1, 1, 512) and score.shape == (1, 1, 1, 1)
        assert 0.05 < ref_score < 0.95
        scale = np.abs(ref_feature).max()
        np.testing.assert_allclose(feature[0, 0, 0], ref_feature, rtol=0, atol=1e-4 * scale)
        np.testing.assert_allclose(score[0, 0, 0, 0], ref_score, rtol=0, atol=1e-5)


def test_missing_misshapen_and_extra_weights(nets, tmp_path):
    """ModelScope silently keeps its random initialisation for these; msvision refuses them, naming the weight."""
    backbone, quality = (n.state_dict() for n in nets)
    lacking = {k: v for k, v in backbone.items() if k != "layer3.17.res_layer.3.weight"}
    with pytest.raises(InvalidModelError, match=r"backbone\.layer3\.17\.res_layer\.3\.weight"):
        EQFace(_save(tmp_path / "lacking", lacking, quality), None, threads=1)
    misshapen = dict(quality, **{"qualtiy.3.weight": torch.zeros(3, 512)})
    with pytest.raises(InvalidModelError, match=r"quality\.qualtiy\.3\.weight.*\(3, 512\)"):
        EQFace(_save(tmp_path / "misshapen", backbone, misshapen), None, threads=1)
    extra = dict(backbone, **{"fc.weight": torch.zeros(2)})
    with pytest.raises(InvalidModelError, match=r"backbone\.fc\.weight"):
        EQFace(_save(tmp_path / "extra", extra, quality), None, threads=1)
