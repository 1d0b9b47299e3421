"""``torchvision.transforms`` subset: ``Compose`` and ``ToTensor`` (documented behaviour only)."""

import numpy as np
import torch


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img


class ToTensor:
    """PIL image or HxWxC ndarray -> CxHxW float tensor.

    Documented: uint8 inputs (and PIL modes L, LA, P, I, F, RGB, YCbCr, RGBA, CMYK, 1) are scaled to [0, 1]
    by dividing by 255; other dtypes are converted without scaling. A 2-D array becomes 1xHxW.
    """

    def __call__(self, pic):
        if isinstance(pic, np.ndarray):
            arr = pic
        else:  # PIL image
            arr = np.asarray(pic)
            if pic.mode == "1":
                arr = arr.astype(np.uint8) * 255
        if arr.ndim == 2:
            arr = arr[:, :, None]
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        if t.dtype == torch.uint8:
            return t.to(torch.float32).div(255)
        return t
