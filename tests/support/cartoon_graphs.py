"""Test-time builders of ModelScope model directories for the DCT-Net portrait cartoon pipeline (task
``image-portrait-stylization``, pipeline ``unet-person-image-cartoon``:
modelscope/pipelines/cv/image_cartoon_pipeline.py), whose real files (``damo/cv_unet_person-image-cartoon_*``) are
out of reach. A model directory holds

- ``cartoon_bg.pb`` and ``cartoon_h.pb``: the background and head generators, frozen from ModelScope's OWN
  ``unet_generator`` (models/cv/cartoon/network.py) and ``guided_filter`` (loss.py) the way its exporter
  (exporters/cv/cartoon_translation_exporter.py) freezes them: ``input_image`` float32 [H, W, 3] (BGR, 0..255;
  H and W multiples of 4) -> ``output_image`` uint8 [H, W, 3]. Random weights from a seeded NumPy generator, the
  last conv rescaled per channel (zero mean, std ``_GEN_STD`` on a calibration photo) so the output is neither
  flat nor saturated;
- ``detector.pb``: a stand-in for the Peppa-Pig/DSFD face detector (facelib/face_detector.py): a small conv
  backbone (BatchNorm under a TF1 ``cond`` on ``training_flag``), SSD-like heads on 2 feature levels with constant
  anchors, DSFD's box decoding and its ``batch_non_max_suppression`` (``tf.map_fn``: a TF1 while loop around
  NonMaxSuppressionV3). Where the faces are comes from a *prior*: constant per-anchor logit and box-code biases
  make the anchors that overlap a prior box score high and decode to it, while the conv heads' bounded
  contribution keeps every score image-dependent and clear of the thresholds (see ``face_detector_graph``);
- ``keypoints.pb``: a stand-in for the 68-point landmark net (facelib/face_landmark.py): a constant iBUG-68 face
  template plus small image-dependent offsets;
- ``alpha.jpg``: the soft elliptical head mask the pipeline blends the cartoon head with;
- ``configuration.json`` as the hub's (no ``model`` key: ModelScope would then try to build a model class).

TensorFlow (and tf_slim) are test-only dependencies, imported when a graph is built.
"""

import functools
import json
import math
import os
import sys
import types
from pathlib import Path

import numpy as np

from support.tf_graphs import freeze

# ---- the face detector's thresholds ----
# in the graph (DSFD's batch_non_max_suppression): what reaches tower_0/boxes
DETECTOR_SCORE_THRESHOLD = 0.3
DETECTOR_IOU_THRESHOLD = 0.4
DETECTOR_MAX_BOXES = 100
# ModelScope's Python side (facelib/config.py: config.DETECT.thres; face_landmark.py: FaceLandmark.min_face)
MODELSCOPE_SCORE_THRESHOLD = 0.8
MODELSCOPE_MIN_FACE = 60
DETECTOR_INPUT = 512  # config.DETECT.input_shape
LANDMARK_INPUT = 160  # config.KEYPOINTS.input_shape
PIXEL_MEANS = (123.0, 116.0, 103.0)  # config.DATA.pixel_means (RGB)

# ---- how the prior drives the detector ----
# anchors whose IoU with a prior box is at least this score high and decode to the box
MATCH_IOU = 0.5
# the anchors (at most NEAR_ANCHORS per prior box) with the highest IoU in [NEAR_IOU, NEAR_IOU_MAX) score in the
# middle band: above the graph's 0.3, below ModelScope's 0.8; their boxes overlap the face's less than the graph's
# NMS IoU, so some survive NMS and are dropped by ModelScope's Python threshold
NEAR_IOU, NEAR_IOU_MAX, NEAR_ANCHORS = 0.2, 0.4, 3
# class-1-minus-class-0 logit of the three kinds of anchors; the heads add at most +-2 * _HEAD_LOGIT, so the scores
# are sigmoid(4 -+ 0.5) in [0.971, 0.989] (matched), sigmoid(0 -+ 0.5) in [0.378, 0.622] (near, decoys) and
# sigmoid(-4 -+ 0.5) in [0.011, 0.030] (the rest): at least 0.07 from 0.3 and from 0.8 whatever the image
MATCH_LOGIT, NEAR_LOGIT, BACKGROUND_LOGIT = 4.0, 0.0, -4.0
_HEAD_LOGIT = 0.25  # each class logit of the conv head: _HEAD_LOGIT * tanh(conv)
_HEAD_CODE = (
    0.25  # box codes of the conv head: _HEAD_CODE * tanh(conv), then / 5 (at most 5% of the anchor size)
)
SCORE_BANDS = {
    "match": (0.97, 0.99),
    "near": (0.37, 0.63),
    "background": (0.0, 0.031),
}
BOX_CODE_SCALE = (5.0, 5.0, 5.0, 5.0)  # DSFD's decode: codes / scale * anchor size + anchor corners
# the anchors: (stride in the 512 input, sizes in pixels); each size at aspect ratios (h / w) 1 and 1.3
_R2 = math.sqrt(2.0)
ANCHOR_LEVELS = (
    (16, (16.0, 16.0 * _R2, 32.0, 32.0 * _R2)),
    (32, (64.0, 64.0 * _R2, 128.0, 128.0 * _R2, 256.0, 256.0 * _R2)),
)
ANCHOR_RATIOS = (1.0, 1.3)

# ---- generators ----
_GEN_STD = 0.35  # std of each channel of unet_generator's output (-1..1 scale) on the calibration photo
_GEN_BIAS_STD = 0.05  # the biases of the other convs

# ---- the real photos and the faces in them ----
# Face boxes (x1, y1, x2, y2) in the photo's own pixels, found with msvision's ULFD face detector:
#   msvision.pipeline('face-detection', model=<shared>/assets/modelscope/damo/cv_manual_face-detection_ulfd)(path)
# ['boxes'], rounded (scores 0.99..1.0). ``faces/...`` lie in <shared>/assets/images/; ``skimage/...`` are
# scikit-image's bundled photos.
FACE_BOXES = {
    # 1024x769: min side > 720, so ModelScope first resizes to 958x720 (the face: 155x216 there)
    "faces/ulfd_5.jpg": [(508, 121, 674, 351)],
    # 512x512: the detector's input scale is 1 (the face: 97x120)
    "skimage/astronaut.png": [(176, 57, 273, 177)],
    # 450x344: two faces of 61x80 and 59x87 (wider or taller than 60)
    "faces/ulfd_13.jpg": [(299, 88, 360, 168), (93, 17, 152, 104)],
    # 570x380: three faces of 33..36 x 37..49 px: all at most 60 wide and high, so the landmark step skips them
    "faces/office3.jpg": [(441, 86, 474, 133), (236, 50, 272, 99), (51, 82, 83, 119)],
}
# the scenarios: photo, faces given to the detector's prior, decoys (boxes scoring in the middle band only), and
# how many faces ModelScope's face analyser (FaceAna.run) finds: boxes above 0.8, then landmark sets (boxes > 60 px)
SCENARIOS = {
    "one_face": {
        "photo": "faces/ulfd_5.jpg",
        "faces": FACE_BOXES["faces/ulfd_5.jpg"],
        "decoys": [],
        "found": 1,
    },
    "astronaut": {
        "photo": "skimage/astronaut.png",
        "faces": FACE_BOXES["skimage/astronaut.png"],
        "decoys": [],
        "found": 1,
    },
    "two_faces": {
        "photo": "faces/ulfd_13.jpg",
        "faces": FACE_BOXES["faces/ulfd_13.jpg"],
        "decoys": [],
        "found": 2,
    },
    "small_faces": {
        "photo": "faces/office3.jpg",
        "faces": FACE_BOXES["faces/office3.jpg"],
        "decoys": [],
        "found": 0,  # 3 boxes above 0.8, no landmark set
    },
    # no face in the prior: the detector's graph still returns the decoy (scores 0.38..0.62), ModelScope's 0.8 drops it
    "no_face": {"photo": "skimage/coffee.png", "faces": [], "decoys": [(150, 100, 330, 300)], "found": 0},
}


def photo_path(name, shared_dir=None) -> str:
    """The path of a photo named as in FACE_BOXES / SCENARIOS (``faces/...``: under ``shared_dir``/assets/images,
    by default the shared folder; ``skimage/...``: scikit-image's bundled data)."""
    if name.startswith("skimage/"):
        from support.model_dirs import skimage_photo

        return skimage_photo(name.split("/", 1)[1])
    if shared_dir is None:
        from support.paths import shared_path

        shared_dir = shared_path()
    return os.path.join(str(shared_dir), "assets", "images", name)


def _tf():
    import tensorflow as tf

    return tf


# ---- ModelScope's own network.py / loss.py, loaded under a TF1 shim ----


@functools.cache
def _modelscope_cartoon_module(filename):
    """ModelScope's models/cv/cartoon/``filename`` (TF1 code: ``import tensorflow as tf``, ``import
    tensorflow.contrib.slim as slim``) executed with ``tensorflow`` bound to a proxy of ``tf.compat.v1`` and
    ``tensorflow.contrib.slim`` to tf_slim (sys.modules is restored afterwards; the module's functions keep the
    proxy). loss.py's relative import of network.disc_sn (a discriminator, unused here) is dropped."""
    import modelscope
    import tensorflow as tf
    import tf_slim

    class _TF1(types.ModuleType):
        def __getattr__(self, attr):
            return getattr(tf.compat.v1, attr)

    path = os.path.join(os.path.dirname(modelscope.__file__), "models", "cv", "cartoon", filename)
    with open(path) as f:
        source = f.read()
    if filename == "loss.py":
        assert "from .network import disc_sn" in source
        source = source.replace("from .network import disc_sn", "disc_sn = None")
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.slim = tf_slim
    proxy = _TF1("tensorflow")
    proxy.contrib = contrib
    names = ("tensorflow", "tensorflow.contrib", "tensorflow.contrib.slim")
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update(dict(zip(names, (proxy, contrib, tf_slim))))
    try:
        module = types.ModuleType(f"modelscope_cartoon_{filename[:-3]}")
        module.__file__ = path
        exec(compile(source, path, "exec"), module.__dict__)
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
    return module


def _calibration_photo():
    """BGR float, 128x128: scikit-image's astronaut (the generators see BGR, as the pipeline feeds them)."""
    import cv2

    from support.model_dirs import skimage_photo

    img = cv2.imread(skimage_photo("astronaut.png"))
    return cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32)


def _build_generator(values, rng):
    """The exporter's recipe in the default graph; variables take ``values[name]``, or (missing) a draw from
    ``rng`` (He-normal weights, small normal biases) recorded into ``values``. Returns (output node name, the
    unet_generator output tensor)."""
    tf = _tf()
    network = _modelscope_cartoon_module("network.py")
    loss = _modelscope_cartoon_module("loss.py")

    def getter(getter, name, *args, **kwargs):
        if name not in values:
            shape = [int(d) for d in kwargs["shape"]]
            if len(shape) == 4:
                fan_in = shape[0] * shape[1] * shape[2]
                values[name] = rng.normal(0.0, math.sqrt(2.0 / fan_in), shape).astype(np.float32)
            else:
                values[name] = rng.normal(0.0, _GEN_BIAS_STD, shape).astype(np.float32)
        kwargs["initializer"] = tf.compat.v1.constant_initializer(values[name])
        return getter(name, *args, **kwargs)

    with tf.compat.v1.variable_scope("", custom_getter=getter, use_resource=False):
        # exporters/cv/cartoon_translation_exporter.py, export_frozen_graph_def, with CartoonModel's __call__
        input = tf.compat.v1.placeholder(tf.float32, [None, None, 3], name="input_image")
        input = input[:, :, :][tf.newaxis]
        input = input / 127.5 - 1.0
        raw = network.unet_generator(input)
        output = loss.guided_filter(input, raw, r=1)
        final_out = output[0]
        final_out = tf.clip_by_value(final_out, -0.999999, 0.999999)
        final_out = (final_out + 1.0) * 127.5
        final_out = tf.cast(final_out, tf.uint8, name="output_image")
    return final_out.op.name, raw


@functools.cache
def cartoon_generator_graph(seed=0) -> bytes:
    """A frozen DCT-Net generator (``cartoon_bg.pb`` / ``cartoon_h.pb``): ModelScope's ``unet_generator`` (channel
    32, 4 res blocks) and ``guided_filter(r=1)`` with random weights drawn from NumPy's generator under ``seed``;
    the last conv (32 -> 3) is rescaled per output channel, its bias set, so unet_generator's output has zero mean
    and std _GEN_STD on a calibration photo (astronaut, 128x128): on real photos the uint8 output then spreads
    (per-channel std 20..50 on the shared photos, seeds 0..9) with under 2% of values at 0 or 255.
    ``input_image`` float32 [H, W, 3] -> ``output_image`` uint8 [H, W, 3]."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    values = {}
    graph = tf.compat.v1.Graph()
    with graph.as_default():
        _, raw = _build_generator(values, rng)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            out = sess.run(raw, {"input_image:0": _calibration_photo()})
    (last,) = [name for name, v in values.items() if v.ndim == 4 and v.shape[-1] == 3]
    bias = last[: -len("weights")] + "biases"
    # out = conv(x, W) + b is linear per output channel: scale W's channel c, then move the mean by b
    mean = out.reshape(-1, 3).mean(0)
    mean = mean - values[bias]
    std = out.reshape(-1, 3).std(0)
    k = _GEN_STD / np.maximum(std, 1e-6)
    values[last] = (values[last] * k).astype(np.float32)
    values[bias] = (-mean * k).astype(np.float32)
    return freeze(lambda: _build_generator(values, None)[0], seed)


# ---- face detector ----


@functools.cache
def detector_anchors() -> np.ndarray:
    """[N, 4] float32 (ymin, xmin, ymax, xmax), normalized to the 512x512 input: for each level, grid cell (row
    major) and size x ratio (the heads' channel order)."""
    out = []
    for stride, sizes in ANCHOR_LEVELS:
        n = DETECTOR_INPUT // stride
        centres = (np.arange(n) + 0.5) * stride
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        per_cell = []
        for size in sizes:
            for ratio in ANCHOR_RATIOS:
                h, w = size * math.sqrt(ratio), size / math.sqrt(ratio)
                per_cell.append(np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], -1))
        out.append(np.stack(per_cell, 2).reshape(-1, 4))
    return (np.concatenate(out) / DETECTOR_INPUT).astype(np.float32)


def _iou(anchors, box):
    """IoU of each (ymin, xmin, ymax, xmax) row of ``anchors`` with ``box``."""
    ih = np.clip(np.minimum(anchors[:, 2], box[2]) - np.maximum(anchors[:, 0], box[0]), 0, None)
    iw = np.clip(np.minimum(anchors[:, 3], box[3]) - np.maximum(anchors[:, 1], box[1]), 0, None)
    inter = ih * iw
    area = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    return inter / (area + (box[2] - box[0]) * (box[3] - box[1]) - inter)


def detector_prior(prior_boxes, decoy_boxes=()):
    """The constant per-anchor biases of the detector for ``prior_boxes`` (faces) and ``decoy_boxes``, both
    (x1, y1, x2, y2) normalized to the 512 input: (logit difference [N], box codes [N, 4], kinds [N] with 0
    background, 1 matched (IoU >= MATCH_IOU with a face: decodes to that face), 2 near (middle band: up to
    NEAR_ANCHORS per face with IoU in [NEAR_IOU, NEAR_IOU_MAX), and the decoys' matched anchors)). Raises
    ValueError for a face fewer than 2 anchors match (too small or too thin for the anchors)."""
    anchors = detector_anchors().astype(np.float64)
    size = np.concatenate([anchors[:, 2:] - anchors[:, :2]] * 2, axis=1)  # ha, wa, ha, wa
    n = len(anchors)
    logit = np.full(n, BACKGROUND_LOGIT)
    codes = np.zeros((n, 4))
    kinds = np.zeros(n, np.int64)
    best = np.zeros(n)  # matched anchors: the IoU of the face they decode to
    for x1, y1, x2, y2 in prior_boxes:
        box = np.array([y1, x1, y2, x2], np.float64)
        iou = _iou(anchors, box)
        matched = (iou >= MATCH_IOU) & (iou > best)
        if (iou >= MATCH_IOU).sum() < 2:
            raise ValueError(
                f"face {(x1, y1, x2, y2)}: {(iou >= MATCH_IOU).sum()} anchors with IoU >= {MATCH_IOU}"
            )
        kinds[matched] = 1
        best[matched] = iou[matched]
        codes[matched] = (box - anchors[matched]) / size[matched] * np.array(BOX_CODE_SCALE)
    for x1, y1, x2, y2 in prior_boxes:
        box = np.array([y1, x1, y2, x2], np.float64)
        iou = _iou(anchors, box)
        near = np.flatnonzero((iou >= NEAR_IOU) & (iou < NEAR_IOU_MAX) & (kinds == 0))
        near = near[np.argsort(-iou[near], kind="stable")[:NEAR_ANCHORS]]
        kinds[near] = 2
    for x1, y1, x2, y2 in decoy_boxes:
        iou = _iou(anchors, np.array([y1, x1, y2, x2], np.float64))
        kinds[(iou >= MATCH_IOU) & (kinds == 0)] = 2
    logit[kinds == 1] = MATCH_LOGIT
    logit[kinds == 2] = NEAR_LOGIT
    return logit.astype(np.float32), codes.astype(np.float32), kinds


class _Net:
    """TF1 layers whose weights draw from one seeded NumPy generator; BatchNorm's mode is a TF1 ``cond`` on
    ``training`` (FusedBatchNormV3 in both branches, Switch/Merge), its statistics and affine random."""

    def __init__(self, seed, training):
        self.rng = np.random.default_rng(seed)
        self.training = training

    def var(self, name, value):
        tf = _tf()
        return tf.compat.v1.Variable(np.asarray(value, np.float32), name=name, use_resource=False)

    def conv(self, x, cout, k=3, stride=1, name="conv", gain=2.0, bias=True):
        tf = _tf()
        cin = int(x.shape[-1])
        with tf.compat.v1.variable_scope(name):
            w = self.var("weights", self.rng.normal(0, math.sqrt(gain / (k * k * cin)), (k, k, cin, cout)))
            y = tf.nn.conv2d(x, w, strides=[1, stride, stride, 1], padding="SAME")
            if bias:
                y = tf.nn.bias_add(y, self.var("biases", self.rng.normal(0, 0.1, cout)))
        return y

    def bn(self, x, name="BatchNorm"):
        """tf_slim's fused batch_norm for a tensor ``is_training`` (tf_slim's own needs tf_keras): FusedBatchNormV3
        with the moving statistics in the false branch of a v1 ``cond``, with batch statistics in the true one."""
        tf = _tf()
        c = int(x.shape[-1])
        with tf.compat.v1.variable_scope(name):
            gamma = self.var("gamma", self.rng.uniform(0.6, 1.4, c))
            beta = self.var("beta", self.rng.normal(0, 0.2, c))
            mean = self.var("moving_mean", self.rng.normal(0, 0.3, c))
            variance = self.var("moving_variance", self.rng.uniform(0.5, 2.0, c))

            def training():
                return tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=1e-3, is_training=True)[0]

            def inference():
                return tf.compat.v1.nn.fused_batch_norm(
                    x, gamma, beta, mean, variance, epsilon=1e-3, is_training=False
                )[0]

            return tf.compat.v1.cond(self.training, training, inference)

    def conv_bn(self, x, cout, stride=1, name="conv"):
        tf = _tf()
        with tf.compat.v1.variable_scope(name):
            y = self.conv(x, cout, stride=stride, bias=False, name="conv")
            return tf.nn.relu(self.bn(y))

    def dense(self, x, cout, name="fc", gain=1.0):
        tf = _tf()
        cin = int(x.shape[-1])
        with tf.compat.v1.variable_scope(name):
            w = self.var("weights", self.rng.normal(0, math.sqrt(gain / cin), (cin, cout)))
            return tf.nn.bias_add(tf.matmul(x, w), self.var("biases", self.rng.normal(0, 0.1, cout)))


def _decode(codes, anchors):
    """DSFD-style box decoding: each corner moves by codes / BOX_CODE_SCALE times the anchor's height / width."""
    tf = _tf()
    with tf.compat.v1.name_scope("decode"):
        ymin, xmin, ymax, xmax = tf.unstack(anchors, axis=1)
        ha, wa = ymax - ymin, xmax - xmin
        size = tf.stack([ha, wa, ha, wa], axis=1)
        return codes / tf.constant(BOX_CODE_SCALE) * size + anchors


def batch_non_max_suppression(boxes, scores, score_threshold, iou_threshold, max_boxes):
    """DSFD's batch NMS: per image (``tf.map_fn``, a TF1 while loop under ``freeze``), keep the boxes scoring at
    least ``score_threshold``, NMS them, pad to ``max_boxes``. Returns boxes [B, max_boxes, 4], scores
    [B, max_boxes], num_detections [B] int32."""
    tf = _tf()

    def fn(x):
        boxes, scores = x
        ids = tf.where(tf.greater_equal(scores, score_threshold))
        ids = tf.squeeze(ids, axis=1)
        boxes = tf.gather(boxes, ids)
        scores = tf.gather(scores, ids)
        selected = tf.image.non_max_suppression(boxes, scores, max_boxes, iou_threshold)
        boxes = tf.gather(boxes, selected)
        scores = tf.gather(scores, selected)
        num_boxes = tf.cast(tf.shape(boxes)[0], tf.int32)
        zero_padding = max_boxes - num_boxes
        boxes = tf.pad(boxes, [[0, zero_padding], [0, 0]])
        scores = tf.pad(scores, [[0, zero_padding]])
        boxes.set_shape([max_boxes, 4])
        scores.set_shape([max_boxes])
        return boxes, scores, num_boxes

    return tf.map_fn(
        fn,
        [boxes, scores],
        fn_output_signature=(tf.float32, tf.float32, tf.int32),
        parallel_iterations=8,
        back_prop=False,
        swap_memory=False,
        infer_shape=True,
    )


def face_detector_graph(prior_boxes=(), seed=0, decoy_boxes=()) -> bytes:
    """The face detector stand-in (``detector.pb``). Inputs ``tower_0/images`` float32 [B, 512, 512, 3] (RGB
    0..255; the anchors are constants for 512x512) and ``training_flag`` (bool); outputs ``tower_0/boxes``
    [B, 100, 4] (normalized ymin, xmin, ymax, xmax), ``tower_0/scores`` [B, 100], ``tower_0/num_detections`` [B]
    int32.

    Backbone: 5 stride-2 conv-BN-ReLU (512 -> 16), heads (3x3 conv: 2 class logits and 4 box codes per anchor) on
    the stride-16 and stride-32 maps. Each class logit is the constant prior logit (``detector_prior``) plus
    _HEAD_LOGIT * tanh(head), each box code the prior's code plus _HEAD_CODE * tanh(head): the image moves scores a
    little (by construction at most into SCORE_BANDS, never within 0.07 of 0.3 or 0.8) and boxes by at most 5% of
    the anchor size. So for ``prior_boxes`` (x1, y1, x2, y2 in the 512 input, normalized: ``face_prior_for``)
    several anchors per face score ~0.98 and decode to about the face box (NMS keeps one), up to 3 near ones per
    face and the decoys' anchors score ~0.5 (pass the graph's 0.3, fail ModelScope's 0.8), all else ~0.02."""

    def key(boxes):
        return tuple(tuple(float(v) for v in box) for box in boxes)

    return _face_detector_graph(key(prior_boxes), seed, key(decoy_boxes))


@functools.lru_cache(maxsize=32)
def _face_detector_graph(prior_boxes, seed, decoy_boxes) -> bytes:
    logit, prior_codes, _ = detector_prior(prior_boxes, decoy_boxes)
    anchors = detector_anchors()

    def build():
        tf = _tf()
        with tf.compat.v1.name_scope("tower_0"):
            images = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3], name="images")
        training = tf.compat.v1.placeholder(tf.bool, [], name="training_flag")
        net = _Net(seed, training)
        with tf.compat.v1.variable_scope("tower_0"):
            x = (images - tf.constant(PIXEL_MEANS, tf.float32)) / 58.0
            features = []
            with tf.compat.v1.variable_scope("backbone"):
                for i, c in enumerate((16, 32, 32, 64, 64)):
                    x = net.conv_bn(x, c, stride=2, name=f"conv{i}")
                    if i >= 3:
                        features.append(x)
            cls, reg = [], []
            with tf.compat.v1.variable_scope("head"):
                for level, ((_, sizes), feature) in enumerate(zip(ANCHOR_LEVELS, features)):
                    a = len(sizes) * len(ANCHOR_RATIOS)
                    c = tf.nn.tanh(net.conv(feature, 2 * a, name=f"cls{level}", gain=1.0))
                    r = tf.nn.tanh(net.conv(feature, 4 * a, name=f"reg{level}", gain=1.0))
                    batch = tf.shape(feature)[0]
                    cls.append(tf.reshape(c, tf.stack([batch, -1, 2])))
                    reg.append(tf.reshape(r, tf.stack([batch, -1, 4])))
                cls = _HEAD_LOGIT * tf.concat(cls, axis=1)
                reg = _HEAD_CODE * tf.concat(reg, axis=1)
            with tf.compat.v1.name_scope("prior"):
                half = logit / 2
                cls = cls + tf.constant(np.stack([-half, half], axis=1))
                reg = reg + tf.constant(prior_codes)
            boxes = _decode(reg, tf.constant(anchors))
            boxes = tf.clip_by_value(boxes, 0.0, 1.0)
            scores = tf.nn.softmax(cls, axis=2)[:, :, 1]
            with tf.compat.v1.name_scope("nms"):
                boxes, scores, num = batch_non_max_suppression(
                    boxes, scores, DETECTOR_SCORE_THRESHOLD, DETECTOR_IOU_THRESHOLD, DETECTOR_MAX_BOXES
                )
        with tf.compat.v1.name_scope("tower_0/"):
            names = [
                tf.identity(boxes, name="boxes").op.name,
                tf.identity(scores, name="scores").op.name,
                tf.identity(num, name="num_detections").op.name,
            ]
        return names

    return freeze(build, seed)


# ---- landmarks ----


def _landmark_template() -> np.ndarray:
    """[68, 2] (x, y) of the iBUG 68-point layout, normalized to the landmark net's crop (a square 1.4 times the
    face box's width around its centre): jaw 0-16, brows 17-26, nose 27-35, eyes 36-41 / 42-47 (closed hexagons,
    about 0.13 x 0.06 of the crop), mouth 48-59 (outer) / 60-67 (inner)."""
    t = np.linspace(math.pi, 0.0, 17)
    jaw = np.stack([0.5 + 0.33 * np.cos(t), 0.40 + 0.53 * np.sin(t)], 1)
    bx = np.linspace(0.24, 0.45, 5)
    brow_l = np.stack([bx, 0.33 - 0.03 * np.sin(np.linspace(0.3, math.pi - 0.3, 5))], 1)
    brow_r = np.stack([1.0 - bx[::-1], brow_l[::-1, 1]], 1)
    nose = [(0.5, 0.40), (0.5, 0.47), (0.5, 0.54), (0.5, 0.61)]
    nose += [(0.44, 0.65), (0.47, 0.66), (0.5, 0.67), (0.53, 0.66), (0.56, 0.65)]
    eye_l = [(0.29, 0.42), (0.33, 0.39), (0.38, 0.39), (0.42, 0.425), (0.38, 0.45), (0.33, 0.45)]
    eye_r = [(0.58, 0.425), (0.62, 0.39), (0.67, 0.39), (0.71, 0.42), (0.67, 0.45), (0.62, 0.45)]
    mouth = [(0.38, 0.77), (0.42, 0.745), (0.46, 0.735), (0.5, 0.74), (0.54, 0.735), (0.58, 0.745)]
    mouth += [(0.62, 0.77), (0.58, 0.80), (0.54, 0.815), (0.5, 0.82), (0.46, 0.815), (0.42, 0.80)]
    mouth += [(0.40, 0.77), (0.45, 0.76), (0.5, 0.762), (0.55, 0.76)]
    mouth += [(0.60, 0.77), (0.55, 0.78), (0.5, 0.782), (0.45, 0.78)]
    points = np.concatenate([jaw, brow_l, brow_r, nose, eye_l, eye_r, mouth]).astype(np.float32)
    assert points.shape == (68, 2)
    return points


LANDMARK_TEMPLATE = _landmark_template()
LANDMARK_OFFSET = 0.015  # each coordinate: template + LANDMARK_OFFSET * tanh(dense)


@functools.cache
def face_landmark_graph(seed=0) -> bytes:
    """The landmark net stand-in (``keypoints.pb``): ``tower_0/images`` float32 [B, 160, 160, 3] (the crop, RGB
    0..255) and ``training_flag`` -> ``tower_0/prediction`` [B, 143]: 68 (x, y) normalized to the crop
    (LANDMARK_TEMPLATE + LANDMARK_OFFSET * tanh), 3 head-pose values (0.3 * tanh; ModelScope multiplies by 90) and 4
    state logits. 4 stride-2 conv-BN-ReLU, global average pooling, a dense layer."""

    def build():
        tf = _tf()
        with tf.compat.v1.name_scope("tower_0"):
            images = tf.compat.v1.placeholder(
                tf.float32, [None, LANDMARK_INPUT, LANDMARK_INPUT, 3], name="images"
            )
        training = tf.compat.v1.placeholder(tf.bool, [], name="training_flag")
        net = _Net(seed, training)
        with tf.compat.v1.variable_scope("tower_0"):
            x = images / 255.0 - 0.5
            for i, c in enumerate((16, 32, 32, 64)):
                x = net.conv_bn(x, c, stride=2, name=f"conv{i}")
            x = tf.reduce_mean(x, axis=[1, 2])
            y = tf.nn.tanh(net.dense(x, 143, name="fc"))
            points = tf.constant(LANDMARK_TEMPLATE.reshape(-1)) + LANDMARK_OFFSET * y[:, :136]
            pose = 0.3 * y[:, 136:139]
            state = 3.0 * y[:, 139:]
            prediction = tf.concat([points, pose, state], axis=1)
        with tf.compat.v1.name_scope("tower_0/"):
            return tf.identity(prediction, name="prediction").op.name

    return freeze(build, seed)


# ---- alpha.jpg, the directory ----


def alpha_mask(size=256) -> np.ndarray:
    """uint8 [size, size]: a soft ellipse (semi-axes 0.40 and 0.46 of the side, centred a little low), 255 inside
    fading to 0 over 0.08 of the side."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    r = np.sqrt(((xx - 0.5) / 0.40) ** 2 + ((yy - 0.52) / 0.46) ** 2)
    alpha = np.clip((1.0 - r) / 0.18, 0.0, 1.0)
    return np.round(alpha * 255).astype(np.uint8)


CONFIG = {
    "framework": "tensorflow",
    "task": "image-portrait-stylization",
    "pipeline": {"type": "unet-person-image-cartoon"},
    "model_file": {"background": "cartoon_bg.pb", "head": "cartoon_h.pb"},
}


def make_cartoon_dir(path, prior_boxes=(), seed=0, decoy_boxes=()) -> str:
    """A DCT-Net cartoon model directory (see the module docstring) whose face detector finds ``prior_boxes``
    ((x1, y1, x2, y2) normalized to the detector's input: ``face_prior_for``); ``decoy_boxes`` score in the middle
    band only. The generators use seeds ``2 * seed`` (background) and ``2 * seed + 1`` (head); the nets and
    generators are cached per seed, so only the detector is built per call."""
    import cv2

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "configuration.json").write_text(json.dumps(CONFIG, indent=2))
    (path / "cartoon_bg.pb").write_bytes(cartoon_generator_graph(2 * seed))
    (path / "cartoon_h.pb").write_bytes(cartoon_generator_graph(2 * seed + 1))
    (path / "detector.pb").write_bytes(face_detector_graph(tuple(prior_boxes), seed, tuple(decoy_boxes)))
    (path / "keypoints.pb").write_bytes(face_landmark_graph(seed))
    cv2.imwrite(str(path / "alpha.jpg"), alpha_mask())
    return str(path)


def modelscope_size(h, w, size=720):
    """The (h, w) ModelScope's cartoon pipeline works at (models/cv/cartoon/utils.py: resize_size): the short side
    brought down to ``size`` when above it (int truncation), else unchanged."""
    if min(h, w) > size:
        if h > w:
            h, w = int(size * h / w), size
        else:
            h, w = size, int(size * w / h)
    return h, w


def _image_size(image):
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image, ImageOps

        with Image.open(image) as img:
            w, h = ImageOps.exif_transpose(img).size
        return h, w
    return tuple(np.shape(image)[:2])


def face_prior_for(image, boxes_in_pixels):
    """The detector prior for faces at ``boxes_in_pixels`` ((x1, y1, x2, y2) in the pixels of ``image``, a path
    or an HxWx3 array): ModelScope resizes the image (``modelscope_size``), then the detector scales it by
    512 / long side and pastes it top-left, so each coordinate becomes its resized value / the resized long side."""
    h, w = _image_size(image)
    rh, rw = modelscope_size(h, w)
    sx, sy = rw / w, rh / h
    long_side = max(rh, rw)
    return [
        (x1 * sx / long_side, y1 * sy / long_side, x2 * sx / long_side, y2 * sy / long_side)
        for x1, y1, x2, y2 in boxes_in_pixels
    ]


def make_scenario_dir(path, scenario, seed=0, shared_dir=None):
    """(model directory, photo path) for a SCENARIOS entry (a name or the dict)."""
    if isinstance(scenario, str):
        scenario = SCENARIOS[scenario]
    photo = photo_path(scenario["photo"], shared_dir)
    model_dir = make_cartoon_dir(
        path,
        face_prior_for(photo, scenario["faces"]),
        seed=seed,
        decoy_boxes=face_prior_for(photo, scenario["decoys"]),
    )
    return model_dir, photo
