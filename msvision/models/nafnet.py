"""NAFNet (image denoising / deblurring): ModelScope model directory -> C-core graph.

Hyper-parameters come from ``configuration.json`` ``model.network_g``; weights from ``pytorch_model.pt``,
selected the way ModelScope's TorchModel does (``params`` key if present, ``module.`` prefixes stripped).
"""

import os

import numpy as np

from .._native import _C
from ..checkpoint import CheckpointError, load_torch, state_dict_from
from ..errors import InvalidModelError, ModelNotFoundError
from ..utils.constant import ModelFile

_DEFAULTS = {"img_channel": 3, "width": 16, "middle_blk_num": 1, "enc_blk_nums": [], "dec_blk_nums": []}


def _network_settings(config: dict, config_path: str) -> dict:
    try:
        net = dict(config["model"]["network_g"])
    except (KeyError, TypeError, ValueError):
        raise InvalidModelError(f"{config_path}: NAFNet needs model.network_g hyper-parameters") from None
    settings = dict(_DEFAULTS)
    for key, value in net.items():
        if key not in _DEFAULTS:
            continue  # e.g. 'type'
        if isinstance(_DEFAULTS[key], list):
            ok = isinstance(value, list) and all(isinstance(v, int) and 0 <= v <= 1000 for v in value)
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1 << 16
        if not ok:
            raise InvalidModelError(f"{config_path}: model.network_g.{key} has an invalid value {value!r}")
        settings[key] = value
    if len(settings["enc_blk_nums"]) != len(settings["dec_blk_nums"]):
        raise InvalidModelError(f"{config_path}: enc_blk_nums and dec_blk_nums must have the same length")
    return settings


class NAFNet:
    """A loaded NAFNet: ``run(x)`` maps a (1, C, H, W) float32 image in [0, 1] to the clamped restored image."""

    def __init__(self, model_dir: str, config: dict):
        config_path = os.path.join(model_dir, ModelFile.CONFIGURATION)
        self.settings = _network_settings(config, config_path)
        weights_path = os.path.join(model_dir, ModelFile.TORCH_MODEL_FILE)
        if not os.path.isfile(weights_path):
            raise ModelNotFoundError(f"{model_dir}: missing weight file {ModelFile.TORCH_MODEL_FILE}")
        try:
            state = state_dict_from(load_torch(weights_path), param_key="params")
        except CheckpointError as e:
            raise InvalidModelError(str(e)) from e
        try:
            self.graph = _C.build_model("nafnet", self.settings, state)
        except _C.WeightError as e:
            raise InvalidModelError(f"{weights_path}: {e}") from None
        self.pad_multiple = 2 ** len(self.settings["enc_blk_nums"])
        self.channels = self.settings["img_channel"]

    def run(self, x: np.ndarray, threads: int) -> np.ndarray:
        """x: (1, C, H, W) float32. Pads bottom/right with zeros to the network's multiple, as NAFNet does."""
        h, w = x.shape[2:]
        m = self.pad_multiple
        ph, pw = (m - h % m) % m, (m - w % m) % m
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)))
        return self.graph.run([x], threads=threads)[0][:, :, :h, :w]
