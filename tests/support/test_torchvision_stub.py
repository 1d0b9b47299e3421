"""The test-only torchvision stand-in (tests/stubs) against torchvision's documented ToTensor/Compose behaviour:
uint8 data (PIL images, HxWxC arrays) -> float CxHxW in [0, 1] by dividing by 255; other dtypes unscaled;
2-D arrays gain a channel axis; Compose applies transforms in order."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms


def test_is_the_stub():
    import torchvision

    assert torchvision.__version__.endswith("msvision-test-stub")


def test_to_tensor_uint8_pil_and_array():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for x in (arr, Image.fromarray(arr)):
        t = transforms.ToTensor()(x)
        assert t.dtype == torch.float32 and tuple(t.shape) == (3, 5, 7)
        expected = torch.from_numpy(arr.transpose(2, 0, 1).astype(np.float32)) / 255
        assert torch.equal(t, expected)


def test_to_tensor_gray_and_float():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    t = transforms.ToTensor()(Image.fromarray(gray))
    assert tuple(t.shape) == (1, 3, 4) and torch.equal(t[0], torch.from_numpy(gray.astype(np.float32)) / 255)
    f = np.full((2, 2, 1), 3.5, np.float32)
    assert torch.equal(transforms.ToTensor()(f), torch.full((1, 2, 2), 3.5))


def test_compose_order():
    pipeline = transforms.Compose([lambda x: x + 1, lambda x: x * 2])
    assert pipeline(3) == 8


def test_nms_documented_behaviour():
    """torchvision.ops.nms: boxes (x1, y1, x2, y2); discards any box with IoU > iou_threshold with a kept,
    higher-scoring box; returns int64 indices sorted by decreasing score."""
    from torchvision.ops import nms

    boxes = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30], [21, 21, 30, 30]], dtype=torch.float32
    )
    scores = torch.tensor([0.5, 0.9, 0.3, 0.4])
    # IoU(0, 1) = 50 / 100 = 0.5; IoU(2, 3) = 81 / 100 = 0.81
    assert nms(boxes, scores, 0.4).tolist() == [1, 3]
    assert nms(boxes, scores, 0.5).tolist() == [1, 0, 3]  # 0.5 is not > 0.5
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 3, 2]
    assert nms(boxes, scores, 0.4).dtype == torch.int64
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_batched_nms_documented_behaviour():
    """torchvision.ops.batched_nms: NMS independently per category (boxes of different categories never
    suppress each other), indices by decreasing score; both of its CPU paths give the same kept set."""
    from torchvision.ops import batched_nms

    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 8]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 0]), 0.5).tolist() == [0]
    assert batched_nms(boxes, scores, torch.tensor([2, 1, 0]), 0.5).tolist() == [0, 1, 2]
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (1500, 2))
    many = torch.from_numpy(np.concatenate([xy, xy + rng.uniform(5, 30, (1500, 2))], 1).astype(np.float32))
    s = torch.from_numpy(rng.uniform(0, 1, 1500).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 3, 1500))
    per_class = batched_nms(many, s, labels, 0.5)  # 6000 coordinates > 4000: the per-category path
    offset = many + labels[:, None].float() * (many.max() + 1)
    from torchvision.ops import nms

    assert sorted(per_class.tolist()) == sorted(nms(offset, s, 0.5).tolist())
    assert torch.all(s[per_class][:-1] >= s[per_class][1:])


def test_resnet50_documented_structure():
    """torchvision's resnet50: 25,557,032 parameters (its documentation's figure), the v1.5 bottleneck (stride on
    the 3x3), 1000 classes; pretrained weights are refused (nothing downloads in tests)."""
    from torchvision import models

    net = models.resnet50(pretrained=False).eval()
    assert sum(p.numel() for p in net.parameters()) == 25_557_032
    assert net.layer2[0].conv2.stride == (2, 2) and net.layer2[0].conv1.stride == (1, 1)
    assert tuple(net.layer3[0].downsample[0].weight.shape) == (1024, 512, 1, 1)
    with torch.no_grad():
        assert tuple(net(torch.rand(1, 3, 64, 64)).shape) == (1, 1000)
    with pytest.raises(RuntimeError):
        models.resnet50(pretrained=True)


def test_intermediate_layer_getter_documented_example():
    """The documentation's example (on resnet50's channel counts): the named children's outputs by new name, in
    order, and the children after the last one requested dropped."""
    from torchvision import models
    from torchvision.models._utils import IntermediateLayerGetter

    getter = IntermediateLayerGetter(models.resnet50(), {"layer1": "feat1", "layer3": "feat2"})
    assert "layer4" not in dict(getter.named_children()) and "fc" not in dict(getter.named_children())
    with torch.no_grad():
        out = getter(torch.rand(1, 3, 224, 224))
    assert [(k, tuple(v.shape)) for k, v in out.items()] == [
        ("feat1", (1, 256, 56, 56)),
        ("feat2", (1, 1024, 14, 14)),
    ]
    with pytest.raises(ValueError):
        IntermediateLayerGetter(models.resnet50(), {"layer9": "x"})
