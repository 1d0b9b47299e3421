"""The test-only torchvision stand-in (tests/stubs) against torchvision's documented ToTensor/Compose behaviour:
uint8 data (PIL images, HxWxC arrays) -> float CxHxW in [0, 1] by dividing by 255; other dtypes unscaled;
2-D arrays gain a channel axis; Compose applies transforms in order."""

import numpy as np
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
