"""RetinaFace-R50 (ModelScope ``damo/cv_resnet50_face-detection_retinaface``, and the face detector inside GPEN's
portrait-enhancement directory): model directory -> C-core graph.

Settings are ModelScope's ``cfg``: the face-detection model reads them from configuration.json's ``models`` section;
GPEN's pipeline uses its own fixed ``cfg_re50`` (:data:`GPEN_SETTINGS`). Only the ResNet-50 backbone exists in
ModelScope (it raises for any other name), and only the settings that ModelScope's code reads are accepted.

The weights are a torch checkpoint (optionally ``{'state_dict': ...}``, optionally with ``module.`` prefixes).
ModelScope loads them with ``strict=False``: a missing or misnamed weight silently stays random there. msvision loads
strictly: a missing, unexpected or mis-shaped weight is an InvalidModelError naming it.

The graph (:class:`RetinaFace`) maps a (1, H, W, 3) float32 image (NHWC, mean already subtracted) to 9 maps, per level
(strides 8, 16, 32): the face score of each of the level's 2 anchors (softmax over 2 classes = sigmoid of the
difference of the two logits: folded into the class head at load), loc (2 x 4 channels), landmarks (2 x 10 channels).
In NHWC, reshaping a map to (-1, k) gives ModelScope's ``permute(0, 2, 3, 1).view(1, -1, k)`` order.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidModelError
from ..graph import Builder, torchvision_resnet
from ..utils.constant import ModelFile
from .base import Model, torch_state_dict, weight_file

LAYERS = [3, 4, 6, 3]  # torchvision's resnet50
BN_EPS = 1e-5
ANCHORS_PER_CELL = 2

# GPEN's detection.cfg_re50, also what the hub's face-detection configuration.json holds under 'models'
GPEN_SETTINGS = {
    "name": "Resnet50",
    "min_sizes": [[16, 32], [64, 128], [256, 512]],
    "steps": [8, 16, 32],
    "variance": [0.1, 0.2],
    "clip": False,
    "return_layers": {"layer2": 1, "layer3": 2, "layer4": 3},
    "in_channel": 256,
    "out_channel": 256,
}


def read_settings(section, source: str) -> dict:
    """ModelScope's RetinaFace ``cfg`` checked: the ResNet-50 network with FPN outputs of layer2..layer4 (the only
    one ModelScope's RetinaFace builds and its heads fit), three levels of two anchor sizes."""
    if not isinstance(section, dict):
        raise InvalidModelError(f"{source}: 'models' must be an object holding RetinaFace's settings")

    def need(key):
        if key not in section:
            raise InvalidModelError(f"{source}: RetinaFace setting models.{key} is missing")
        return section[key]

    if need("name") != "Resnet50":
        raise InvalidModelError(f"{source}: models.name {section['name']!r}: only 'Resnet50' exists")
    if need("return_layers") != {"layer2": 1, "layer3": 2, "layer4": 3}:
        raise InvalidModelError(f"{source}: models.return_layers must be layer2..layer4 -> 1..3")
    if section.get("pretrain"):
        raise InvalidModelError(f"{source}: models.pretrain would download ImageNet weights; set it false")
    in_ch, out_ch = need("in_channel"), need("out_channel")
    if in_ch != 256:  # the FPN's inputs are layer2..4's 512, 1024, 2048 channels = in_channel * 2, 4, 8
        raise InvalidModelError(f"{source}: models.in_channel must be 256 for ResNet-50, got {in_ch!r}")
    if not isinstance(out_ch, int) or isinstance(out_ch, bool) or out_ch <= 0 or out_ch % 4:
        raise InvalidModelError(f"{source}: models.out_channel must be a positive multiple of 4")
    min_sizes, steps, variance = need("min_sizes"), need("steps"), need("variance")
    if (
        not isinstance(min_sizes, list)
        or len(min_sizes) != 3
        or any(not isinstance(m, list) or len(m) != ANCHORS_PER_CELL for m in min_sizes)
        or any(not isinstance(v, (int, float)) or v <= 0 for m in min_sizes for v in m)
    ):
        raise InvalidModelError(f"{source}: models.min_sizes must be 3 lists of 2 positive sizes")
    if steps != [8, 16, 32]:  # the strides of layer2..4
        raise InvalidModelError(f"{source}: models.steps must be [8, 16, 32], got {steps!r}")
    if (
        not isinstance(variance, list)
        or len(variance) != 2
        or any(not isinstance(v, (int, float)) for v in variance)
    ):
        raise InvalidModelError(f"{source}: models.variance must be two numbers")
    return {
        "min_sizes": [[float(v) for v in m] for m in min_sizes],
        "steps": steps,
        "variance": [float(v) for v in variance],
        "clip": bool(section.get("clip", False)),
        "out_channel": out_ch,
    }


def priors(settings: dict, height: int, width: int) -> np.ndarray:
    """ModelScope's ``PriorBox(cfg, image_size=(height, width)).forward()`` vectorised: (N, 4) float32 (cx, cy, w, h)
    relative to the image; per level (row, column, anchor size). The same float64 arithmetic, cast once."""
    out = []
    for step, sizes in zip(settings["steps"], settings["min_sizes"]):
        rows, cols = -(-height // step), -(-width // step)
        cx = (np.arange(cols, dtype=np.float64) + 0.5) * step / width
        cy = (np.arange(rows, dtype=np.float64) + 0.5) * step / height
        level = np.empty((rows, cols, len(sizes), 4), np.float64)
        level[..., 0] = cx[None, :, None]
        level[..., 1] = cy[:, None, None]
        level[..., 2] = np.array([s / width for s in sizes])
        level[..., 3] = np.array([s / height for s in sizes])
        out.append(level.reshape(-1, 4))
    anchors = np.concatenate(out).astype(np.float32)
    return np.clip(anchors, 0, 1) if settings["clip"] else anchors


def decode(loc: np.ndarray, landmarks: np.ndarray, anchors: np.ndarray, variance) -> tuple:
    """ModelScope's ``decode`` and ``decode_landm`` in float32 with its operation order: boxes as corners and the 5
    landmark points, both relative to the image."""
    v0, v1 = np.float32(variance[0]), np.float32(variance[1])
    centre, size = anchors[:, :2], anchors[:, 2:]
    xy = centre + loc[:, :2] * v0 * size
    wh = size * np.exp(loc[:, 2:] * v1)
    xy = xy - wh / np.float32(2)
    boxes = np.concatenate([xy, wh + xy], axis=1)
    points = centre[:, None, :] + landmarks.reshape(-1, 5, 2) * v0 * size[:, None, :]
    return boxes, points.reshape(-1, 10)


class RetinaFace(Model):
    """The RetinaFace network; ``run(x)`` maps (1, H, W, 3) float32 (NHWC) to the 9 per-level NHWC maps: per level
    (strides 8, 16, 32) scores (2 channels: the anchors' face probabilities), loc (8), landmarks (20).

    ``weights`` is the checkpoint's path inside the model directory, ``settings`` ModelScope's cfg (default: read
    from configuration.json's ``models``)."""

    network = "retinaface"
    layout = "nhwc"
    precisions = ("fp32", "bf16")  # gate: tests/models/test_precision.py

    def __init__(
        self, model_dir, config, threads, *, weights=ModelFile.TORCH_MODEL_FILE, settings=None, **kw
    ):
        source = f"{model_dir}/{ModelFile.CONFIGURATION}"
        self.settings = read_settings((config or {}).get("models") if settings is None else settings, source)
        self._weights_name = weights
        super().__init__(model_dir, config, threads, **kw)

    def read_weights(self, model_dir, config):
        path = weight_file(model_dir, *self._weights_name.split("/"))
        state = torch_state_dict(path, param_key="state_dict")
        return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}, path

    def _conv_bn(self, b: Builder, x, prefix: str, out: int, k: int, *, stride=1, act=None):
        """ModelScope's conv_bn / conv_bn_no_relu / conv_bn1X1: ``<prefix>.0`` conv (no bias), ``<prefix>.1`` BN."""
        return b.conv_bn(
            x, f"{prefix}.0", f"{prefix}.1", out, k, stride=stride, padding=k // 2, eps=BN_EPS, act=act
        )

    def _ssh(self, b: Builder, x, prefix: str, out: int, act):
        """SSH context module: concat(3x3, 5x5 = two 3x3, 7x7 = three 3x3 sharing the first) then ReLU; the ReLU
        of a concatenation is the concatenation of the ReLUs, so it becomes each branch's post-op."""
        c3 = self._conv_bn(b, x, f"{prefix}.conv3X3", out // 2, 3, act="relu")
        c5_1 = self._conv_bn(b, x, f"{prefix}.conv5X5_1", out // 4, 3, act=act)
        c5 = self._conv_bn(b, c5_1, f"{prefix}.conv5X5_2", out // 4, 3, act="relu")
        c7_2 = self._conv_bn(b, c5_1, f"{prefix}.conv7X7_2", out // 4, 3, act=act)
        c7 = self._conv_bn(b, c7_2, f"{prefix}.conv7x7_3", out // 4, 3, act="relu")
        return b.g.concat([c3, c5, c7])

    def _score_head(self, b: Builder, x, prefix: str):
        """ClassHead + softmax over its 2 logits per anchor, taking the face class: softmax(l)[1] =
        sigmoid(l1 - l0), so the 1x1 conv's weight and bias rows become their differences at load."""
        cin = b.channels(x)
        w = b.w.take(f"{prefix}.conv1x1.weight", (ANCHORS_PER_CELL * 2, cin, 1, 1))
        bias = b.w.take(f"{prefix}.conv1x1.bias", (ANCHORS_PER_CELL * 2,))
        wd = np.ascontiguousarray(w[1::2] - w[0::2])
        bd = np.ascontiguousarray(bias[1::2] - bias[0::2])
        y = b.g.conv2d(x, b.g.const(wd), bias=b.g.const(bd))
        return b.g.eltwise(y, act="sigmoid")

    def build(self, b: Builder):
        out_ch = self.settings["out_channel"]
        act = (
            ("leaky_relu", 0.1) if out_ch <= 64 else "relu"
        )  # ModelScope's leaky = 0.1 if out_channels <= 64
        x = b.g.input(channels=3)
        features = torchvision_resnet(b, x, "body", LAYERS, eps=BN_EPS)
        c3, c4, c5 = features[1:]
        o1 = self._conv_bn(b, c3, "fpn.output1", out_ch, 1, act=act)
        o2 = self._conv_bn(b, c4, "fpn.output2", out_ch, 1, act=act)
        o3 = self._conv_bn(b, c5, "fpn.output3", out_ch, 1, act=act)
        # F.interpolate(size=the finer map's) in nearest mode picks floor(dst * in / out): for in = ceil(out / 2)
        # that is floor(dst / 2), a x2 nearest upsampling cropped to the finer map
        o2 = self._conv_bn(
            b,
            b.g.binary(o2, b.g.resize_like(o3, o2, mode="nearest", scale=2.0), op="add"),
            "fpn.merge2",
            out_ch,
            3,
            act=act,
        )
        o1 = self._conv_bn(
            b,
            b.g.binary(o1, b.g.resize_like(o2, o1, mode="nearest", scale=2.0), op="add"),
            "fpn.merge1",
            out_ch,
            3,
            act=act,
        )
        outputs = []
        for level, feature in enumerate((o1, o2, o3)):
            f = self._ssh(b, feature, f"ssh{level + 1}", out_ch, act)
            outputs.append(self._score_head(b, f, f"ClassHead.{level}"))
            outputs.append(b.conv(f, f"BboxHead.{level}.conv1x1", ANCHORS_PER_CELL * 4, 1))
            outputs.append(b.conv(f, f"LandmarkHead.{level}.conv1x1", ANCHORS_PER_CELL * 10, 1))
        return outputs


MEAN = (
    104.0,
    117.0,
    123.0,
)  # subtracted from the image's channels as given (BGR in GPEN, RGB in face detection)
MAX_SIDE = 1500
TARGET_SIDE = 1000.0
CONFIDENCE_THRESHOLD = 0.9
NMS_THRESHOLD = 0.4
TOP_K = 5000
KEEP_TOP_K = 750


class RetinaFaceDetector:
    """ModelScope's RetinaFace detection around the network (``RetinaFaceDetection.forward`` / ``.detect``): an
    image larger than 1500 px is resized by 1000 / max side (cv2), the mean subtracted, the network run, priors
    and ``decode`` at the size the network saw, score > 0.9, the 5000 best, NMS (IoU 0.4, +1 areas) keeping 750,
    then boxes, scores and landmarks divided by the resize factor (the scores too: ModelScope's quirk)."""

    def __init__(self, net: RetinaFace) -> None:
        self.net = net
        self._priors = ((0, 0), None)  # (size, priors) of the last size seen, replaced as one object

    def _priors_for(self, height: int, width: int) -> np.ndarray:
        size, cached = self._priors
        if size != (height, width):
            cached = priors(self.net.settings, height, width)
            self._priors = ((height, width), cached)
        return cached

    def detect(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``img``: HxWx3 float32. Returns dets (N, 5) float32 (x1, y1, x2, y2, score) and landmarks (N, 5, 2)
        (x, y per point), best first."""
        from .._native import _C
        from ..io.geometry import resize_by

        ss = 1.0
        if max(img.shape[:2]) > MAX_SIDE:
            ss = TARGET_SIDE / max(img.shape[:2])
            img = resize_by(img, ss)
        height, width = img.shape[:2]
        x = (img - np.array(MEAN, np.float32))[None]
        outs = self.net.run(np.ascontiguousarray(x, np.float32))
        scores = np.concatenate([m.reshape(-1) for m in outs[0::3]])
        sel = np.nonzero(scores > CONFIDENCE_THRESHOLD)[0]
        loc = np.concatenate([m.reshape(-1, 4) for m in outs[1::3]])[sel]
        landmarks = np.concatenate([m.reshape(-1, 10) for m in outs[2::3]])[sel]
        boxes, points = decode(
            loc, landmarks, self._priors_for(height, width)[sel], self.net.settings["variance"]
        )
        boxes = boxes * np.array([width, height] * 2, np.float32)
        points = points * np.array([width, height] * 5, np.float32)
        scores = scores[sel]
        order = scores.argsort()[::-1][:TOP_K]  # numpy's sort, as ModelScope: ties fall the same way
        dets = np.concatenate([boxes[order], scores[order, None]], axis=1).astype(np.float32)
        points = points[order]
        # py_cpu_nms sorts again; visiting in that order makes _C.nms's tie rule (lower index first) follow it
        again = dets[:, 4].argsort()[::-1]
        kept = _C.nms(
            dets[again, :4], dets[again, 4], NMS_THRESHOLD, mode="union", offset=1.0, max_keep=KEEP_TOP_K
        )
        keep = again[kept]
        return dets[keep] / np.float32(ss), points[keep].reshape(-1, 5, 2) / np.float32(ss)
