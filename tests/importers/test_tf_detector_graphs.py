"""What TF1 detector graphs need from the importer, against TensorFlow itself: placeholders fixed to a constant
(``training_flag``), the host tail after an SSD head's reshape, convolutions of shape-dependent constants (a box
filter's pixel counts over ``tf.ones``), and the ``map_fn`` NMS loop cut at its inputs and run in C
(msvision.importers.tf.nms_loop), with TensorFlow's NMS semantics: ties to the lower index, corners in either
order, boxes of no area, the candidate threshold, max_output_size, zero padding.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")

from support.tf_graphs import freeze, run_frozen  # noqa: E402

from msvision import _C  # noqa: E402
from msvision.errors import InvalidModelError  # noqa: E402
from msvision.importers.tf.importer import TfGraph  # noqa: E402

v1 = tf.compat.v1
OUTS = ["boxes:0", "scores:0", "count:0"]


def _tricky_boxes(rng, n):
    """Boxes in [0, 1] with inverted corners, zero areas, exact duplicates and tied scores."""
    boxes = rng.uniform(0, 1, (n, 4)).astype(np.float32)
    boxes[: n // 8, 2:] = boxes[: n // 8, :2]  # no area
    boxes[n // 4 : n // 4 + 5] = boxes[n // 4]  # duplicates
    scores = rng.choice(np.linspace(0.05, 0.95, 12), n).astype(np.float32)  # many exact ties
    return boxes, scores


def _map_nms(boxes, scores, threshold, iou, max_boxes, version="v3", strict=False):
    def fn(x):
        b, s = x
        keep = tf.greater(s, threshold) if strict else tf.greater_equal(s, threshold)
        ids = tf.squeeze(tf.where(keep), axis=1)
        b, s = tf.gather(b, ids), tf.gather(s, ids)
        if version == "v2":
            sel = tf.raw_ops.NonMaxSuppressionV2(
                boxes=b, scores=s, max_output_size=max_boxes, iou_threshold=iou
            )
        elif version == "v3-score":
            sel = tf.image.non_max_suppression(b, s, max_boxes, iou, score_threshold=0.5)
        else:
            sel = tf.image.non_max_suppression(b, s, max_boxes, iou)
        b, s = tf.gather(b, sel), tf.gather(s, sel)
        n = tf.cast(tf.shape(b)[0], tf.int32)
        b, s = tf.pad(b, [[0, max_boxes - n], [0, 0]]), tf.pad(s, [[0, max_boxes - n]])
        b.set_shape([max_boxes, 4])
        s.set_shape([max_boxes])
        return b, s, n

    return tf.map_fn(fn, [boxes, scores], dtype=(tf.float32, tf.float32, tf.int32), back_prop=False)


def _conv(x, out, k, stddev, seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, stddev, (k, k, int(x.shape[-1]), out)).astype(np.float32)
    return tf.nn.conv2d(x, w, 1, "SAME") + rng.normal(0, 0.1, out).astype(np.float32)


def _batch_norm(x, training, seed):
    """BatchNorm whose mode switches on ``training`` through a TF1 cond (Switch/Merge in the frozen graph)."""
    rng = np.random.default_rng(seed)
    c = int(x.shape[-1])
    gamma, beta = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.normal(0, 0.2, c).astype(np.float32)
    mean, var = rng.normal(0, 0.3, c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32)
    return v1.cond(
        training,
        lambda: v1.nn.fused_batch_norm(x, gamma, beta, is_training=True)[0],
        lambda: v1.nn.fused_batch_norm(x, gamma, beta, mean, var, is_training=False)[0],
    )


def _detector(n_anchors=96, version="v3", strict=False, threshold=0.3, iou=0.4, max_boxes=20, flag=True):
    """features -> SSD-style head (conv, reshape [B, -1, 4], softmax over 2 classes) -> decode around constant
    anchors -> clip -> map_fn NMS; BatchNorm under a cond on a ``training_flag`` placeholder."""
    rng = np.random.default_rng(5)
    anchors = rng.uniform(0, 1, (n_anchors, 4)).astype(np.float32)
    anchors[:, 2:] = np.clip(anchors[:, :2] + rng.uniform(0.05, 0.4, (n_anchors, 2)), 0, 1)

    def build():
        x = v1.placeholder(tf.float32, [None, 8, 12, 3], name="images")
        training = v1.placeholder(tf.bool, [], name="training_flag")
        f = _conv(x, 8, 3, stddev=0.5, seed=1)
        if flag:
            f = _batch_norm(f, training, seed=4)
        f = tf.nn.relu(f)
        codes = _conv(f, 4, 1, stddev=0.05, seed=2)
        logits = _conv(f, 2, 1, stddev=1.0, seed=3)
        b = tf.shape(x)[0]
        codes = tf.reshape(codes, [b, -1, 4])
        scores = tf.nn.softmax(tf.reshape(logits, [b, -1, 2]), axis=2)[:, :, 1]
        x1, y1, x2, y2 = tf.unstack(codes, axis=2)
        w, h = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        boxes = tf.stack(
            [
                y1 / 5.0 * h + anchors[:, 1],
                x1 / 5.0 * w + anchors[:, 0],
                y2 / 5.0 * h + anchors[:, 3],
                x2 / 5.0 * w + anchors[:, 2],
            ],
            axis=2,
        )
        boxes = tf.clip_by_value(boxes, 0.0, 1.0)
        ob, os_, on = _map_nms(boxes, scores, threshold, iou, max_boxes, version, strict)
        return [
            tf.identity(t, name=name).op.name for t, name in zip((ob, os_, on), ("boxes", "scores", "count"))
        ]

    return freeze(build)


def _same_detections(ours, theirs):
    for o, t in zip(ours, theirs):
        assert o.shape == t.shape and o.dtype == t.dtype, (o.shape, o.dtype, t.shape, t.dtype)
    assert np.array_equal(ours[2], theirs[2]), (ours[2], theirs[2])
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-6)
    np.testing.assert_allclose(ours[1], theirs[1], atol=1e-6)


@pytest.mark.parametrize("version", ["v2", "v3", "v3-score"])
@pytest.mark.parametrize("strict", [False, True])
def test_detector_with_map_fn_nms_matches_tensorflow(version, strict):
    g = _detector(version=version, strict=strict)
    m = TfGraph(g, ["images:0"], OUTS, threads=2, fixed_inputs={"training_flag": False})
    assert m.map_nms is not None and m.map_nms.max_output_size == 20
    assert m.map_nms.iou_threshold == pytest.approx(0.4) and m.map_nms.candidate_threshold == pytest.approx(
        0.3
    )
    rng = np.random.default_rng(1)
    found = 0
    for batch in (1, 3):
        x = rng.uniform(-1, 1, (batch, 8, 12, 3)).astype(np.float32)
        ours = m.run(x)
        theirs = run_frozen(g, {"images:0": x, "training_flag:0": False}, OUTS)
        _same_detections(ours, theirs)
        found += int(theirs[2].sum())
    assert found > 10  # the thresholds and NMS really ran on many candidates


def test_max_output_size_caps_the_detections():
    g = _detector(threshold=0.0, iou=0.9, max_boxes=5)
    m = TfGraph(g, ["images:0"], OUTS, threads=2, fixed_inputs={"training_flag": False})
    x = np.random.default_rng(2).uniform(-1, 1, (2, 8, 12, 3)).astype(np.float32)
    ours = m.run(x)
    theirs = run_frozen(g, {"images:0": x, "training_flag:0": False}, OUTS)
    _same_detections(ours, theirs)
    assert list(theirs[2]) == [5, 5]


def test_nms_tf_mode_matches_tensorflow_on_ties_and_degenerate_boxes():
    rng = np.random.default_rng(3)
    for trial in range(20):
        boxes, scores = _tricky_boxes(rng, 200)
        iou = float(rng.choice([0.0, 0.3, 0.5, 0.7]))
        expected = tf.image.non_max_suppression(boxes, scores, 300, iou).numpy()
        got = _C.nms(boxes, scores, iou, mode="tf", max_keep=300)
        assert np.array_equal(got, expected), trial
        capped = _C.nms(boxes, scores, iou, mode="tf", max_keep=7)
        assert np.array_equal(capped, expected[:7])


def test_a_cond_on_an_unfixed_placeholder_is_refused():
    g = _detector()
    with pytest.raises(InvalidModelError, match="predicate is not a constant"):
        TfGraph(g, ["images:0"], OUTS, threads=2)
    with pytest.raises(InvalidModelError, match="no placeholder 'flag'"):
        TfGraph(g, ["images:0"], OUTS, threads=2, fixed_inputs={"flag": False})


def test_ssd_head_reshape_runs_on_the_host():
    """A reshape that moves data between axes starts a host tail: what follows runs in NumPy, as TF computes it;
    a convolution after it is refused, naming the op."""

    def build():
        x = v1.placeholder(tf.float32, [None, 6, 10, 3], name="x")
        c = _conv(x, 8, 3, stddev=0.5, seed=6)
        r = tf.reshape(c, [tf.shape(x)[0], -1, 2])
        p = tf.nn.softmax(r, axis=2)
        a, b = tf.unstack(r, axis=2)
        y = tf.concat([p, tf.stack([tf.exp(a * 0.1) - b, tf.sigmoid(b)], axis=2)], axis=1)
        return [tf.identity(y, name="y").op.name]

    g = freeze(build)
    m = TfGraph(g, ["x:0"], ["y:0"], threads=2)
    x = np.random.default_rng(4).uniform(-1, 1, (2, 6, 10, 3)).astype(np.float32)
    (ours,) = m.run(x)
    (theirs,) = run_frozen(g, {"x:0": x}, ["y:0"])
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)

    def conv_after():
        x = v1.placeholder(tf.float32, [1, 6, 10, 3], name="x")
        r = tf.reshape(x, [1, 10, 6, 3])
        return [tf.identity(_conv(r, 4, 3, stddev=0.5, seed=7), name="y").op.name]

    with pytest.raises(InvalidModelError, match="moves data between axes"):
        TfGraph(freeze(conv_after), ["x:0"], ["y:0"], threads=2).run(np.zeros((1, 6, 10, 3), np.float32))


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (16, 9), (32, 48)])
def test_box_filter_of_ones_is_a_host_constant(size):
    """The guided filter's pixel counts (a depthwise box filter over tf.ones of the input's size): computed on
    the host per plan, as TF computes them, and the activation divided by them."""

    def build():
        x = v1.placeholder(tf.float32, [1, None, None, 3], name="x")
        s = tf.shape(x)
        ones = tf.ones((1, s[1], s[2], 1), dtype=tf.float32)
        kernel = np.full((3, 3, 1, 1), 1 / 9, np.float32)
        counts = tf.nn.depthwise_conv2d(ones, kernel, [1, 1, 1, 1], "SAME")
        box = tf.nn.depthwise_conv2d(x, np.full((3, 3, 3, 1), 1 / 9, np.float32), [1, 1, 1, 1], "SAME")
        return [tf.identity(box / counts, name="y").op.name]

    g = freeze(build)
    m = TfGraph(g, ["x:0"], ["y:0"], threads=2)
    x = np.random.default_rng(5).uniform(0, 255, (1, *size, 3)).astype(np.float32)
    (ours,) = m.run(x)
    (theirs,) = run_frozen(g, {"x:0": x}, ["y:0"])
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-3)


def test_other_while_loops_are_refused():
    def summing_loop():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        ys = tf.map_fn(lambda r: tf.reduce_sum(r) * 2.0, x, back_prop=False)
        return [tf.identity(ys, name="y").op.name]

    with pytest.raises(InvalidModelError, match="not a map_fn NMS"):
        TfGraph(freeze(summing_loop), ["x:0"], ["y:0"], threads=2)

    def soft_nms():
        b = v1.placeholder(tf.float32, [None, 10, 4], name="b")
        s = v1.placeholder(tf.float32, [None, 10], name="s")

        def fn(x):
            bb, ss = x
            sel, _ = tf.image.non_max_suppression_with_scores(bb, ss, 5, 0.5, soft_nms_sigma=0.5)
            n = tf.shape(sel)[0]
            out = tf.pad(tf.gather(bb, sel), [[0, 5 - n], [0, 0]])
            out.set_shape([5, 4])
            return out

        y = tf.map_fn(fn, [b, s], dtype=tf.float32, back_prop=False)
        return [tf.identity(y, name="y").op.name]

    with pytest.raises(InvalidModelError, match="not a map_fn NMS"):
        TfGraph(freeze(soft_nms), ["b:0", "s:0"], ["y:0"], threads=2)


def test_inspect_reports_the_loop_and_fixes_mode_flags(tmp_path):
    from msvision.importers.tf.inspect import describe

    path = tmp_path / "detector.pb"
    path.write_bytes(_detector())
    report, ok = describe(str(path))
    assert ok, report
    assert "unsupported ops: none" in report and "fixed: training_flag=False" in report
    assert "map_fn NMS loop: cut at" in report and "IoU > 0.4, at most 20" in report
    report, ok = describe(str(path), fixed={"training_flag": True})
    assert ok and "fixed: training_flag=True" in report  # the training branch's BatchNorm imports too


@pytest.mark.parametrize(
    "surgery",
    ["gather without inputs", "write without inputs", "gather by the NMS count", "NMS without inputs"],
)
def test_malformed_loops_are_refused_by_name(surgery):
    """Malformed loop nodes raise InvalidModelError naming the node, never IndexError or a silent match."""
    import dataclasses

    from msvision.importers.tf.graphdef import parse_graphdef

    nodes = parse_graphdef(_detector(version="v3"), "detector")
    op, keep = {
        "gather without inputs": ("TensorArrayGatherV3", 1),
        "write without inputs": ("TensorArrayWriteV3", 0),
        "gather by the NMS count": ("GatherV2", None),
        "NMS without inputs": ("NonMaxSuppressionV3", 2),
    }[surgery]
    changed = []
    for n in nodes:
        if n.op == op and keep is not None:
            n = dataclasses.replace(n, inputs=n.inputs[:keep])
        elif n.op == op and any("NonMaxSuppression" in t for t in n.inputs):
            n = dataclasses.replace(n, inputs=[t + ":1" if "NonMaxSuppression" in t else t for t in n.inputs])
        changed.append(n)
    with pytest.raises(InvalidModelError, match="not a map_fn NMS|malformed|has no input"):
        TfGraph(changed, ["images:0"], OUTS, threads=2, fixed_inputs={"training_flag": False})
