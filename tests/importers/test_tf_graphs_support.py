"""The TensorFlow stand-ins for ModelScope's TF1 matting graphs (tests/support/tf_graphs.py) are what they claim:
their frozen GraphDefs hold the ops real TF1 matting graphs hold, TF runs them to the ``output_png`` convention
(input RGB, truncated to uint8, plus an alpha with a real spread), and ModelScope's own matting pipeline runs on a
model directory holding one."""

import functools

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
cv2 = pytest.importorskip("cv2")

from support import tf_graphs  # noqa: E402

PHOTO = (
    "assets/images/faces/office3.jpg"  # 570x380: the long side is above 512, so the network size scales down
)
SIZES = [(37, 53), (64, 64), (200, 131)]

# every graph: the shape subgraph feeding the network size, the batch axis, the cond'ed BatchNorm, the output
COMMON = {
    "Placeholder",
    "PlaceholderWithDefault",
    "Shape",
    "StridedSlice",
    "Cast",
    "ExpandDims",
    "ResizeBilinear",
    "Conv2D",
    "BiasAdd",
    "FusedBatchNormV3",
    "Switch",
    "Merge",
    "Relu",
    "ConcatV2",
    "Maximum",
    "Minimum",
    "Squeeze",
    "Const",
    "Identity",
}
MATTING = COMMON | {
    "Pack",
    "Round",
    "RealDiv",
    "Mul",
    "Sub",
    "ResizeNearestNeighbor",
    "Conv2DBackpropInput",
    "MaxPool",
    "Relu6",
    "Elu",
}
EXPECTED_OPS = {
    "bshm": MATTING
    | {
        "MirrorPad",
        "Pad",
        "DepthwiseConv2dNative",
        "LeakyRelu",
        "Mean",
        "Sigmoid",
        "FusedBatchNorm",
        "FloorDiv",
    },
    "universal": MATTING | {"AvgPool", "Add", "AddV2", "Tanh", "Softmax", "FusedBatchNormV2", "Rsqrt"},
    "skin": COMMON | {"Sigmoid"},
}
# what freezing must have removed: variables and their reads, initialisers, v2 control flow
NOT_FROZEN = {
    "VariableV2",
    "VarHandleOp",
    "ReadVariableOp",
    "Assign",
    "AssignVariableOp",
    "If",
    "StatelessIf",
}
BUILDERS = {
    "bshm": tf_graphs.bshm_graph,
    "universal": tf_graphs.universal_matting_graph,
    "skin": tf_graphs.skin_mask_graph,
}


@functools.cache
def graph(name, seed=0):
    return BUILDERS[name](seed=seed)


def nodes(graph_bytes):
    return tf.compat.v1.GraphDef.FromString(graph_bytes).node


@pytest.fixture(scope="module")
def photo(shared_dir):
    """The photo as RGB uint8."""
    bgr = cv2.imread(str(shared_dir / PHOTO))
    assert bgr is not None, PHOTO
    return np.ascontiguousarray(bgr[:, :, ::-1])


def test_tf_graphs_support_op_histograms():
    for name in BUILDERS:
        hist = tf_graphs.op_histogram(graph(name))
        missing = EXPECTED_OPS[name] - set(hist)
        assert not missing, (name, sorted(missing), hist)
        assert not NOT_FROZEN & set(hist), (name, hist)
        # one BatchNorm cond per conv_bn: every Merge has its Switches
        assert hist["Switch"] > hist["Merge"] > 0, (name, hist)
        by_name = {n.name: n for n in nodes(graph(name))}
        assert by_name["output_png"].op == "Cast"
        assert by_name["output_png"].attr["DstT"].type == tf.uint8.as_datatype_enum
        assert by_name["input_image"].attr["dtype"].type == tf.float32.as_datatype_enum
        assert by_name["training_flag"].op == "PlaceholderWithDefault"


def test_tf_graphs_support_op_attributes():
    """Every resize mode, a reflect MirrorPad and a zero Pad each feeding a VALID conv in BSHM; odd-size SAME
    pooling's attributes in the universal graph."""
    for name, nearest_align in [("bshm", {True}), ("universal", {False})]:
        ns = nodes(graph(name))
        bilinear = {
            (n.attr["align_corners"].b, n.attr["half_pixel_centers"].b)
            for n in ns
            if n.op == "ResizeBilinear"
        }
        assert bilinear == {(False, False), (True, False), (False, True)}, (name, bilinear)
        nearest = {n.attr["align_corners"].b for n in ns if n.op == "ResizeNearestNeighbor"}
        assert nearest == nearest_align, (name, nearest)
    ns = nodes(graph("bshm"))
    ops = {n.name: n.op for n in ns}
    assert [n.attr["mode"].s for n in ns if n.op == "MirrorPad"] == [b"REFLECT"]
    valid_inputs = {
        ops[n.input[0].split(":")[0]] for n in ns if n.op == "Conv2D" and n.attr["padding"].s == b"VALID"
    }
    assert valid_inputs == {"MirrorPad", "Pad"}, valid_inputs
    assert any(n.op == "Conv2D" and list(n.attr["strides"].list.i) == [1, 2, 2, 1] for n in ns)
    pools = [n for n in nodes(graph("universal")) if n.op in ("MaxPool", "AvgPool")]
    assert {(n.op, n.attr["padding"].s, tuple(n.attr["ksize"].list.i)) for n in pools} == {
        ("MaxPool", b"SAME", (1, 3, 3, 1)),
        ("AvgPool", b"SAME", (1, 3, 3, 1)),
        ("MaxPool", b"SAME", (1, 2, 2, 1)),
    }


def test_tf_graphs_support_seeded():
    assert tf_graphs.bshm_graph(seed=0) == graph("bshm")
    assert tf_graphs.bshm_graph(seed=1) != graph("bshm")


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_tf_graphs_support_run_frozen(name, size, photo):
    h, w = size
    rng = np.random.default_rng(h * w)
    # float64 as ModelScope feeds it, with fractions: the uint8 cast truncates (after float32 conversion)
    image = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA).astype(np.float64)
    image = np.clip(image + rng.uniform(0, 1, image.shape), 0, 255)
    (out,) = tf_graphs.run_frozen(graph(name), {"input_image:0": image}, ["output_png:0"])
    assert out.dtype == np.uint8 and out.shape == (h, w, 4)
    np.testing.assert_array_equal(out[:, :, :3], image.astype(np.float32).astype(np.uint8))
    alpha = out[:, :, 3].astype(np.float64)
    assert alpha.std() > 10, (name, size, alpha.mean(), alpha.std())
    assert 10 < alpha.mean() < 245, (name, size, alpha.mean())
    # the BatchNorm conds are live: batch statistics (training_flag True) give another alpha
    (trained,) = tf_graphs.run_frozen(
        graph(name), {"input_image:0": image, "training_flag:0": True}, ["output_png:0"]
    )
    assert np.abs(trained[:, :, 3].astype(int) - out[:, :, 3]).mean() > 1


@pytest.mark.parametrize("task", ["portrait-matting", "universal-matting"])
def test_tf_graphs_support_modelscope_pipeline(task, tmp_path, shared_dir, photo):
    pytest.importorskip("modelscope")
    name = {"portrait-matting": "bshm", "universal-matting": "universal"}[task]
    model_dir = tf_graphs.make_matting_dir(tmp_path / "model", task=task, graph=graph(name))
    out = tf_graphs.modelscope_tf_pipeline(task, model_dir)(str(shared_dir / PHOTO))["output_img"]
    assert out.dtype == np.uint8 and out.shape == photo.shape[:2] + (4,)
    np.testing.assert_array_equal(out[:, :, :3], photo[:, :, ::-1])  # BGR
    (rgba,) = tf_graphs.run_frozen(graph(name), {"input_image:0": photo.astype(np.float64)}, ["output_png:0"])
    np.testing.assert_array_equal(out, cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert out[:, :, 3].std() > 10


def test_tf_graphs_support_make_matting_dir_default_graph(tmp_path):
    import json

    path = tf_graphs.make_matting_dir(tmp_path / "u", task="universal-matting")
    config = json.loads((tmp_path / "u" / "configuration.json").read_text())
    assert config == {
        "framework": "tensorflow",
        "task": "universal-matting",
        "pipeline": {"type": "unet-universal-matting"},
    }
    assert (tmp_path / "u" / "tf_graph.pb").read_bytes() == graph("universal")
    assert path == str(tmp_path / "u")
