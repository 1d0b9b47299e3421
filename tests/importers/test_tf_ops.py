"""The TensorFlow importer (msvision.importers.tf.importer.TfGraph) op by op against TensorFlow itself.

Every test builds a graph of one op (or one op and what the importer folds into it) on float32 NHWC placeholders
of odd sizes (1 included), freezes it (tests/support/tf_graphs.py), runs it through ``TfGraph`` and through TF's
own session, and compares: float outputs to ~1e-4, layout ops, integer and shape outputs exactly. Every plan is
also checked to hold no oneDNN reference implementation (and MSVISION_REFUSE_REF=1, set by tests/conftest.py,
makes planning one fail). What the importer refuses by design is tested to raise InvalidModelError naming the op.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")

from support.tf_graphs import freeze, run_frozen  # noqa: E402

from msvision.errors import InvalidInputError, InvalidModelError  # noqa: E402
from msvision.importers.tf.importer import TfGraph  # noqa: E402

v1 = tf.compat.v1
RTOL, ATOL = 1e-4, 1e-5


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _const(shape, seed=1, low=-1.0, high=1.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(low, high, shape) * scale).astype(np.float32)


def _he(shape, fan_in, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape).astype(np.float32)


def _no_ref(m):
    """No step of the last plan runs on a oneDNN reference implementation."""
    steps = m.steps()
    assert not [s for s in steps if "ref" in s.split(":")[1]], steps
    return steps


def _build(build, shapes, dynamic=False):
    """Freezes ``build(*placeholders)`` (placeholders x0, x1... of ``shapes``; ``dynamic``: spatial sizes unknown
    to the graph); its outputs become y0, y1... Returns (graph bytes, input names, output names)."""
    n_out = []

    def graph():
        xs = []
        for i, s in enumerate(shapes):
            declared = list(s)
            if dynamic and len(s) == 4:
                declared[1] = declared[2] = None
            xs.append(v1.placeholder(tf.float32, declared, name=f"x{i}"))
        ys = build(*xs)
        ys = list(ys) if isinstance(ys, (list, tuple)) else [ys]
        n_out.append(len(ys))
        return [tf.identity(y, name=f"y{i}").op.name for i, y in enumerate(ys)]

    g = freeze(graph)
    return g, [f"x{i}:0" for i in range(len(shapes))], [f"y{i}:0" for i in range(n_out[0])]


def _compare(ours, theirs, exact, rtol, atol):
    assert len(ours) == len(theirs)
    for i, (o, t) in enumerate(zip(ours, theirs)):
        t = np.asarray(t)
        assert o.shape == t.shape and o.dtype == t.dtype, (i, o.shape, o.dtype, t.shape, t.dtype)
        if exact or t.dtype.kind != "f":
            np.testing.assert_array_equal(o, t, err_msg=f"output {i}")
        else:
            np.testing.assert_allclose(o, t, rtol=rtol, atol=atol, err_msg=f"output {i}")


def check(
    build,
    *shapes,
    low=-1.0,
    high=1.0,
    exact=False,
    rtol=RTOL,
    atol=ATOL,
    dynamic=False,
    runs=None,
    seed=0,
):
    """``build`` on placeholders of ``shapes``, through TfGraph and through TF, compared; returns the TfGraph.
    ``runs``: further lists of input shapes run on the same TfGraph (``dynamic`` graphs)."""
    g, ins, outs = _build(build, shapes, dynamic)
    m = TfGraph(g, ins, outs, threads=2)
    rng = np.random.default_rng(seed)
    for run_shapes in [shapes, *(runs or [])]:
        feeds = [rng.uniform(low, high, s).astype(np.float32) for s in run_shapes]
        ours = m.run(*feeds)
        theirs = run_frozen(g, dict(zip(ins, feeds)), outs)
        _compare(ours, theirs, exact, rtol, atol)
        _no_ref(m)
    return m


def refuses(build, *shapes, match, dynamic=False):
    """The importer (at load or at the first run) refuses ``build``'s graph with a message matching ``match``."""
    g, ins, outs = _build(build, shapes, dynamic)
    with pytest.raises(InvalidModelError, match=match):
        m = TfGraph(g, ins, outs, threads=2)
        m.run(*[np.zeros(s, np.float32) for s in shapes])


def _graph_ops(m):
    """The ops of the importer's pruned, folded graph besides constants and placeholders (a convolution with
    what it folded is one ``_Conv``)."""
    return [n.op for n in m.order if n.op not in ("Const", "Placeholder")]


def _conv_steps(steps):
    return [s for s in steps if s.split(":")[0].startswith(("conv", "deconv"))]


def test_reference_implementations_are_refused_suite_wide():
    """tests/conftest.py sets MSVISION_REFUSE_REF=1, so a plan with a oneDNN reference step fails to build (on top
    of the step check every test here makes)."""
    assert os.environ.get("MSVISION_REFUSE_REF") == "1"


# --------------------------------------------------------------------------------------------------
# convolutions
# --------------------------------------------------------------------------------------------------

# (kernel (kh, kw), strides (sh, sw), dilation, padding: SAME/VALID or explicit [[0,0],[t,b],[l,r],[0,0]])
CONV2D = [
    ((1, 1), (1, 1), 1, "VALID"),
    ((1, 1), (2, 2), 1, "SAME"),
    ((3, 3), (1, 1), 1, "SAME"),
    ((3, 3), (1, 1), 1, "VALID"),
    ((3, 3), (2, 2), 1, "SAME"),
    ((3, 3), (2, 2), 1, "VALID"),
    ((3, 3), (3, 3), 1, "SAME"),
    ((3, 3), (3, 3), 1, "VALID"),
    ((3, 3), (2, 1), 1, "SAME"),
    ((3, 3), (1, 1), 2, "SAME"),
    ((3, 3), (1, 1), 2, "VALID"),
    ((5, 5), (1, 1), 1, "SAME"),
    ((5, 5), (2, 2), 1, "SAME"),
    ((5, 5), (3, 3), 1, "VALID"),
    ((5, 5), (1, 1), 2, "SAME"),
    ((1, 7), (1, 1), 1, "SAME"),
    ((1, 7), (2, 2), 1, "VALID"),
    ((2, 2), (1, 1), 1, "SAME"),  # even kernels: SAME pads one more at the bottom/right
    ((4, 4), (2, 2), 1, "SAME"),
    ((3, 3), (1, 1), 1, [[0, 0], [1, 2], [0, 3], [0, 0]]),
    ((3, 3), (2, 2), 1, [[0, 0], [2, 0], [1, 1], [0, 0]]),
    ((5, 5), (3, 3), 2, [[0, 0], [0, 1], [3, 2], [0, 0]]),
]
CONV_SIZES = [(1, 1, 3), (9, 7, 3), (16, 33, 4)]


def _fits(size, k, s, d, padding):
    """Whether a VALID window fits (TF refuses an empty output)."""
    h, w, _ = size
    ek = [(kk - 1) * d + 1 for kk in k]
    if padding == "VALID":
        return h >= ek[0] and w >= ek[1]
    if isinstance(padding, list):
        return h + sum(padding[1]) >= ek[0] and w + sum(padding[2]) >= ek[1]
    return True


def _conv_id(c):
    k, s, d, p = c
    p = "x".join(str(v) for pair in p[1:3] for v in pair) if isinstance(p, list) else p
    return f"k{k[0]}x{k[1]}_s{s[0]}x{s[1]}_d{d}_{p}"


def _size_id(s):
    return "x".join(map(str, s))


@pytest.mark.parametrize(
    "case, size",
    [
        pytest.param(c, size, id=f"{_conv_id(c)}-{_size_id(size)}")
        for c in CONV2D
        for size in CONV_SIZES
        if _fits(size, c[0], c[1], c[2], c[3])  # (TF refuses a VALID window larger than the input)
    ],
)
def test_conv2d(case, size):
    """Conv2D with every padding mode (SAME's asymmetric split, EXPLICIT), strides, dilations and kernel shape."""
    k, s, d, padding = case
    c = size[2]
    w = _he((*k, c, 5), k[0] * k[1] * c)

    def build(x):
        return tf.nn.conv2d(x, w, strides=[1, *s, 1], padding=padding, dilations=[1, d, d, 1])

    m = check(build, (1, *size))
    assert len(_conv_steps(m.steps())) == 1


@pytest.mark.parametrize("groups, stride", [(2, 1), (3, 2), (6, 1)])
def test_grouped_conv2d(groups, stride):
    """A Conv2D whose filter takes a fraction of the input channels is a grouped convolution."""
    c, cout = 6, 6 * (2 if groups < 6 else 1)
    w = _he((3, 3, c // groups, cout), 9 * c // groups)

    def build(x):
        return tf.nn.conv2d(x, w, strides=[1, stride, stride, 1], padding="SAME")

    check(build, (1, 9, 7, c))


DEPTHWISE = [
    (3, 1, 1, "SAME"),
    (3, 1, 1, "VALID"),
    (3, 2, 1, "SAME"),
    (3, 2, 1, "VALID"),
    (3, 1, 2, "SAME"),
    (3, 2, 2, "VALID"),
    (5, 1, 2, "SAME"),
    (5, 2, 1, "SAME"),
    (1, 2, 2, "VALID"),
]


@pytest.mark.parametrize(
    "k, stride, multiplier, padding, size",
    [
        pytest.param(*case, size, id=f"k{case[0]}_s{case[1]}_m{case[2]}_{case[3]}-{_size_id(size)}")
        for case in DEPTHWISE
        for size in [(1, 1, 3), (9, 7, 4), (16, 33, 3)]
        if case[3] == "SAME" or min(size[:2]) >= case[0]
    ],
)
def test_depthwise_conv2d(k, stride, multiplier, padding, size):
    """DepthwiseConv2dNative with channel multipliers 1 and 2 (output channel c * m + j, as TF orders them)."""
    c = size[2]
    w = _he((k, k, c, multiplier), k * k)

    def build(x):
        return tf.nn.depthwise_conv2d(x, w, strides=[1, stride, stride, 1], padding=padding)

    check(build, (1, *size))


def _deconv_out(n, k, s, padding, extra):
    """An output size of a transposed convolution that a ``n``-pixel input fits; ``extra`` picks one of the
    ``s`` sizes that do (0: the smallest)."""
    if padding == "SAME":
        return (n - 1) * s + 1 + extra
    return (n - 1) * s + k + extra


# (kernel, stride, padding, extra): the output is the smallest size the input fits plus ``extra`` (< stride)
DECONV = [
    (3, 1, "SAME", 0),
    (3, 1, "VALID", 0),
    (1, 1, "VALID", 0),
    (3, 2, "SAME", 0),  # 2n - 1
    (3, 2, "SAME", 1),  # 2n
    (4, 2, "SAME", 0),
    (4, 2, "SAME", 1),
    (2, 2, "VALID", 0),  # 2n
    (2, 2, "VALID", 1),  # 2n + 1
    (3, 2, "VALID", 0),  # 2n + 1
    (3, 2, "VALID", 1),  # 2n + 2
    (1, 2, "VALID", 1),
    (5, 3, "SAME", 0),
    (5, 3, "SAME", 2),
    (3, 3, "VALID", 2),
]


@pytest.mark.parametrize("size", [(1, 1, 3), (4, 7, 2), (9, 5, 3)], ids=_size_id)
@pytest.mark.parametrize("k, stride, padding, extra", DECONV)
def test_conv2d_backprop_input(k, stride, padding, extra, size):
    """Conv2DBackpropInput (conv2d_transpose) to every output size its input fits (odd ones: 2n-1, 2n+1...)."""
    h, w, c = size
    cout = 4
    f = _he((k, k, cout, c), k * k * c)
    out = (1, _deconv_out(h, k, stride, padding, extra), _deconv_out(w, k, stride, padding, extra), cout)

    def build(x):
        return v1.nn.conv2d_transpose(x, f, out, strides=[1, stride, stride, 1], padding=padding)

    check(build, (1, *size))


def test_conv2d_backprop_input_sized_by_a_shape_subgraph():
    """A transposed convolution whose output size is computed from another activation's tf.shape at run time."""
    f = _he((4, 4, 3, 5), 16 * 5)

    def build(x, like):
        s = tf.shape(like)
        y = v1.nn.conv2d_transpose(x, f, tf.stack([s[0], s[1], s[2], 3]), [1, 2, 2, 1], "SAME")
        return y + like

    check(build, (1, 5, 4, 5), (1, 9, 8, 3), dynamic=True, runs=[[(1, 3, 7, 5), (1, 6, 13, 3)]])


def _bias_tail(kind):
    """What follows a convolution: a bias (BiasAdd, Add, AddV2, either order), inference FusedBatchNorm V1/V2/V3
    or a bias then a BatchNorm."""
    rng = np.random.default_rng(7)

    def bn(y, version):
        c = int(y.shape[-1])
        gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
        beta = rng.normal(0, 0.3, c).astype(np.float32)
        mean = rng.normal(0, 0.3, c).astype(np.float32)
        var = rng.uniform(0.5, 2.0, c).astype(np.float32)
        op = {1: tf.raw_ops.FusedBatchNorm, 2: tf.raw_ops.FusedBatchNormV2, 3: tf.raw_ops.FusedBatchNormV3}
        return op[version](
            x=y, scale=gamma, offset=beta, mean=mean, variance=var, epsilon=1e-3, is_training=False
        )[0]

    def tail(y):
        c = int(y.shape[-1])
        b = rng.normal(0, 0.5, c).astype(np.float32)
        if kind == "bias_add":
            return tf.nn.bias_add(y, b)
        if kind == "add":
            return tf.raw_ops.Add(x=y, y=b)
        if kind == "add_v2":
            return tf.raw_ops.AddV2(x=y, y=b)
        if kind == "bias_first":
            return tf.raw_ops.AddV2(x=b, y=y)
        if kind == "add_full":  # a (1, 1, 1, c) constant: still one value per channel
            return y + b.reshape(1, 1, 1, c)
        if kind.startswith("bn"):
            return bn(y, int(kind[2]))
        assert kind == "bias_bn3"
        return bn(tf.nn.bias_add(y, b), 3)

    return tail


TAILS = ["bias_add", "add", "add_v2", "bias_first", "add_full", "bn1", "bn2", "bn3", "bias_bn3"]
TAIL_OPS = {
    "bias_add": "BiasAdd",
    "add": "Add",
    "add_v2": "AddV2",
    "bias_first": "AddV2",
    "add_full": "AddV2",
    "bn1": "FusedBatchNorm",
    "bn2": "FusedBatchNormV2",
    "bn3": "FusedBatchNormV3",
    "bias_bn3": "FusedBatchNormV3",
}


def _conv_of(kind, c):
    if kind == "Conv2D":
        w = _he((3, 3, c, 6), 9 * c)
        return lambda x: tf.nn.conv2d(x, w, [1, 2, 2, 1], "SAME")
    if kind == "DepthwiseConv2dNative":
        w = _he((3, 3, c, 2), 9)
        return lambda x: tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "VALID")
    w = _he((3, 3, 6, c), 9 * c)
    return lambda x: v1.nn.conv2d_transpose(x, w, (1, 13, 10, 6), [1, 2, 2, 1], "SAME")


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("kind", ["Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput"])
def test_bias_and_batch_norm_fold_into_the_convolution(kind, tail):
    """A bias and an inference BatchNorm after a convolution fold into its weights at load time: the plan holds
    the convolution alone, and the result is TF's."""
    conv = _conv_of(kind, 3)
    after = _bias_tail(tail)
    m = check(lambda x: after(conv(x)), (1, 7, 5, 3))
    steps = m.steps()
    assert len(steps) == 1 and _conv_steps(steps), steps
    # folded at load time (not left to the core's post-op fusion): the pruned graph holds the convolution alone
    assert _graph_ops(m) == ["_Conv"], _graph_ops(m)
    hist = m.op_histogram()
    assert hist[kind] == 1 and hist[TAIL_OPS[tail]] == 1, hist


def test_a_bias_used_twice_is_not_folded():
    """A convolution output read by its BiasAdd and by another op keeps the BiasAdd as a separate step."""
    w = _he((3, 3, 3, 4), 27)
    b = _const(4, seed=3)

    def build(x):
        y = tf.nn.conv2d(x, w, 1, "SAME")
        return tf.nn.bias_add(y, b), tf.nn.relu(y)

    m = check(build, (1, 7, 5, 3))
    assert len(m.steps()) >= 2


@pytest.mark.parametrize("version", [1, 3])
def test_batch_norm_without_a_convolution(version):
    """An inference FusedBatchNorm on an activation that is not a convolution's runs as a scale and shift."""
    c = 5
    rng = np.random.default_rng(2)
    params = [rng.uniform(0.5, 1.5, c), rng.normal(0, 1, c), rng.normal(0, 1, c), rng.uniform(0.5, 2, c)]
    gamma, beta, mean, var = (p.astype(np.float32) for p in params)
    op = tf.raw_ops.FusedBatchNorm if version == 1 else tf.raw_ops.FusedBatchNormV3

    def build(x):
        return op(
            x=tf.nn.relu(x),
            scale=gamma,
            offset=beta,
            mean=mean,
            variance=var,
            epsilon=1e-3,
            is_training=False,
        )[0]

    check(build, (1, 7, 9, c))


@pytest.mark.parametrize("value", [0.0, 1.5])
@pytest.mark.parametrize("pads", [[1, 1, 1, 1], [0, 2, 1, 0], [3, 0, 0, 2]])
def test_pad_then_valid_conv(pads, value):
    """A zero Pad (Pad, PadV2 with 0) before a VALID convolution folds into the convolution's padding; a PadV2
    with another value stays a separate pad step."""
    t, b, l_, r = pads
    w = _he((3, 3, 3, 4), 27)

    def build(x):
        paddings = [[0, 0], [t, b], [l_, r], [0, 0]]
        y = tf.pad(x, paddings, constant_values=value) if value else tf.pad(x, paddings)
        return tf.nn.conv2d(y, w, [1, 2, 2, 1], "VALID")

    m = check(build, (1, 8, 7, 3))
    assert len(m.steps()) == (1 if value == 0.0 else 2), m.steps()
    assert (_graph_ops(m) == ["_Conv"]) == (value == 0.0), _graph_ops(m)


@pytest.mark.parametrize("conv", ["conv_same", "depthwise_valid", "depthwise_same_stride2"])
def test_pad_then_other_convs(conv):
    """A zero Pad also folds before a SAME convolution (added to SAME's own padding of the padded size) and before
    a depthwise one."""
    wc, wd = _he((3, 3, 3, 4), 27), _he((3, 3, 3, 2), 9)

    def build(x):
        y = tf.pad(x, [[0, 0], [2, 1], [0, 3], [0, 0]])
        if conv == "conv_same":
            return tf.nn.conv2d(y, wc, [1, 2, 2, 1], "SAME")
        stride, padding = (1, "VALID") if conv == "depthwise_valid" else (2, "SAME")
        return tf.nn.depthwise_conv2d(y, wd, [1, stride, stride, 1], padding)

    m = check(build, (1, 7, 6, 3))
    assert len(m.steps()) == 1 and _graph_ops(m) == ["_Conv"], m.steps()


def test_pad_read_twice_is_not_folded():
    """A Pad whose output another op also reads stays a pad step (the other reader needs the padded tensor)."""
    w = _he((3, 3, 3, 4), 27)

    def build(x):
        y = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        return tf.nn.conv2d(y, w, 1, "VALID"), tf.nn.relu(y)

    m = check(build, (1, 5, 4, 3))
    assert any(s.startswith("pad") for s in m.steps()), m.steps()


@pytest.mark.parametrize("mode", ["REFLECT", "SYMMETRIC"])
def test_mirror_pad_then_conv(mode):
    """A MirrorPad before a VALID convolution is not folded (its border is not zeros): a pad step, then the conv."""
    w = _he((3, 3, 3, 4), 27)

    def build(x):
        y = tf.pad(x, [[0, 0], [1, 1], [2, 1], [0, 0]], mode=mode)
        return tf.nn.conv2d(y, w, 1, "VALID")

    m = check(build, (1, 6, 5, 3))
    assert len(m.steps()) == 2 and _graph_ops(m) == ["MirrorPad", "_Conv"], (m.steps(), _graph_ops(m))


# --------------------------------------------------------------------------------------------------
# element-wise binary ops
# --------------------------------------------------------------------------------------------------

BINARY = {
    "Add": lambda a, b: tf.raw_ops.Add(x=a, y=b),
    "AddV2": lambda a, b: tf.raw_ops.AddV2(x=a, y=b),
    "Sub": lambda a, b: tf.raw_ops.Sub(x=a, y=b),
    "Mul": lambda a, b: tf.raw_ops.Mul(x=a, y=b),
    "RealDiv": lambda a, b: tf.raw_ops.RealDiv(x=a, y=b),
    "Maximum": lambda a, b: tf.raw_ops.Maximum(x=a, y=b),
    "Minimum": lambda a, b: tf.raw_ops.Minimum(x=a, y=b),
    "SquaredDifference": lambda a, b: tf.raw_ops.SquaredDifference(x=a, y=b),
}
H, W, C = 5, 7, 3
FULL = (1, H, W, C)
# the second operand's shape (the first is FULL), either order
BROADCASTS = {
    "equal": FULL,
    "per_channel": (1, 1, 1, C),
    "per_pixel": (1, H, W, 1),
    "per_column": (1, 1, W, C),
    "per_row": (1, H, 1, C),
}


def _range(op):
    return (0.5, 2.0) if op == "RealDiv" else (-1.0, 1.0)  # denominators away from zero


@pytest.mark.parametrize(
    "bshape, order",
    [(b, o) for b in BROADCASTS for o in ("full_first", "full_second") if b != "equal" or o == "full_first"],
    ids=str,
)
@pytest.mark.parametrize("op", BINARY)
def test_binary_activations(op, bshape, order):
    """activation (op) activation, equal shapes and with one side broadcast over axes (the other first or
    second: sub and div are not commutative)."""
    shapes = (FULL, BROADCASTS[bshape])
    if order == "full_second":
        shapes = shapes[::-1]
    low, high = _range(op)
    check(BINARY[op], *shapes, low=low, high=high)


CONSTS = {
    "scalar": (),
    "scalar_1111": (1, 1, 1, 1),
    "per_channel": (C,),
    "per_channel_4d": (1, 1, 1, C),
    "per_pixel": (H, W, 1),
    "full": FULL,
    "full_3d": (H, W, C),
}


@pytest.mark.parametrize("const_first", [False, True], ids=["act_op_const", "const_op_act"])
@pytest.mark.parametrize("cshape", CONSTS, ids=str)
@pytest.mark.parametrize("op", BINARY)
def test_binary_with_a_constant(op, cshape, const_first):
    """activation (op) constant and constant (op) activation: scalar, per-channel, per-pixel and full-shape
    constants, in both orders."""
    low, high = _range(op)
    k = _const(CONSTS[cshape], seed=5, low=low, high=high)

    def build(x):
        return BINARY[op](k, x) if const_first else BINARY[op](x, k)

    check(build, FULL, low=low, high=high)


RANKS = {
    "image_minus_pooled": lambda x: x - tf.reduce_mean(x, [1, 2]),
    "pooled_minus_image": lambda x: tf.reduce_mean(x, [1, 2]) - x,
    "image_times_vector": lambda x: x * tf.reduce_mean(x, [0, 1, 2]),
    "unbatched_plus_image": lambda x: x[0] + x,
    "pooled_squared_difference": lambda x: tf.math.squared_difference(tf.reduce_max(x, [1, 2]), x),
    "pooled_plus_4d_constant": lambda x: tf.reduce_mean(x, [1, 2]) + _const((1, 1, 1, C)),
    "4d_constant_over_pooled": lambda x: _const((1, 1, 1, C)) / (tf.reduce_mean(x * x, [1, 2]) + 1.0),
}


@pytest.mark.parametrize("case", RANKS)
def test_binary_broadcasting_across_ranks(case):
    """Operands of different ranks broadcast from the last axis, as TF does: a pooled (1, c) against the image,
    a (c,) vector, an unbatched (h, w, c), a (1, 1, 1, c) constant against a (1, c) activation."""
    check(RANKS[case], FULL)


def test_bias_add_on_an_activation():
    """BiasAdd of a vector on an activation that is not a convolution's."""
    b = _const(C, seed=9)
    check(lambda x: tf.nn.bias_add(tf.nn.relu(x), b), FULL)


def test_activations_broadcasting_against_each_other_are_refused():
    """(1, h, 1, c) (op) (1, 1, w, c): each side broadcasts over the other; refused, naming the op."""
    refuses(lambda a, b: tf.raw_ops.Sub(x=a, y=b), (1, H, 1, C), (1, 1, W, C), match="Sub")


def test_a_constant_that_grows_the_activation_is_refused():
    """A constant larger than the activation it is added to (TF would broadcast the activation) is refused."""
    k = _const((1, H, W, C))
    refuses(lambda x: x + k, (1, 1, 1, C), match="AddV2")


# --------------------------------------------------------------------------------------------------
# unary ops
# --------------------------------------------------------------------------------------------------

UNARY = {
    "Relu": (tf.nn.relu, (-1, 1)),
    "Relu6": (lambda x: tf.nn.relu6(x * 8.0), (-1, 1)),
    "LeakyRelu_0.1": (lambda x: tf.nn.leaky_relu(x, alpha=0.1), (-1, 1)),
    "LeakyRelu_0.2": (lambda x: tf.nn.leaky_relu(x, alpha=0.2), (-1, 1)),
    "Elu": (tf.nn.elu, (-3, 3)),
    "Sigmoid": (tf.nn.sigmoid, (-6, 6)),
    "Tanh": (tf.nn.tanh, (-3, 3)),
    "Neg": (tf.negative, (-1, 1)),
    "Square": (tf.square, (-3, 3)),
    "Sqrt": (tf.sqrt, (0.01, 4)),
    "Rsqrt": (tf.math.rsqrt, (0.01, 4)),
    "Exp": (tf.exp, (-4, 4)),
    "Abs": (tf.abs, (-1, 1)),
    "Reciprocal": (tf.math.reciprocal, (0.1, 4)),
}


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 5, 7, 3), (1, 33, 17, 2)], ids=str)
@pytest.mark.parametrize("op", UNARY)
def test_unary(op, shape):
    """Each activation function and unary op (Sqrt/Rsqrt/Reciprocal on positive inputs)."""
    fn, (low, high) = UNARY[op]
    m = check(fn, shape, low=low, high=high)
    assert m.op_histogram()[op.split("_")[0]] == 1


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 5, 7, 3), (1, 3, 1, 19), (2, 4)], ids=str)
def test_softmax(shape):
    """Softmax over the last axis (channels of an image, features of a matrix)."""
    check(lambda x: tf.nn.softmax(x * 3.0), shape)


# --------------------------------------------------------------------------------------------------
# reductions and pooling
# --------------------------------------------------------------------------------------------------

AXES = [[1, 2], [1], [2], [3], [1, 2, 3], [-3, -2], [-1]]


@pytest.mark.parametrize("keep", [True, False], ids=["keep", "drop"])
@pytest.mark.parametrize("axes", AXES, ids=str)
@pytest.mark.parametrize("op", ["Mean", "Sum", "Max", "Min"])
def test_reduce(op, axes, keep):
    """Mean/Sum/Max/Min over spatial axes and (Mean/Sum) channels, keep_dims or not; Max/Min over channels is
    refused by design, naming the op."""
    fn = {"Mean": tf.reduce_mean, "Sum": tf.reduce_sum, "Max": tf.reduce_max, "Min": tf.reduce_min}[op]

    def build(x):
        return fn(x, axis=axes, keepdims=keep)

    if op in ("Max", "Min") and ({3, -1} & set(axes)):
        refuses(build, (1, 9, 7, 3), match=f"{op} .*channel")
        return
    for shape in [(1, 9, 7, 3), (1, 1, 33, 5), (1, 17, 1, 1)]:
        check(build, shape, rtol=1e-4, atol=1e-4)


POOLS = [(k, s, p) for k in (2, 3) for s in (1, 2) for p in ("SAME", "VALID")] + [((2, 3), (1, 2), "SAME")]


def _kernel(k):
    return (k, k) if isinstance(k, int) else k


@pytest.mark.parametrize(
    "k, s, padding, size",
    [
        pytest.param(k, s, p, size, id=f"k{k}_s{s}_{p}-{_size_id(size)}")
        for k, s, p in POOLS
        for size in [(1, 1, 2), (7, 5, 3), (16, 33, 2)]
        if p == "SAME" or (size[0] >= _kernel(k)[0] and size[1] >= _kernel(k)[1])
    ],
)
@pytest.mark.parametrize("op", ["MaxPool", "AvgPool"])
def test_pool(op, k, s, padding, size):
    """MaxPool/AvgPool SAME/VALID at odd sizes: SAME pads more at the bottom/right, and TF's SAME average
    divides by the window's in-bounds pixels only."""
    kh, kw = _kernel(k)
    fn = tf.nn.max_pool2d if op == "MaxPool" else tf.nn.avg_pool2d
    check(lambda x: fn(x, [kh, kw], s, padding), (1, *size))


# --------------------------------------------------------------------------------------------------
# layout ops (exact)
# --------------------------------------------------------------------------------------------------

CONCATS = {
    "channels_3_1": (3, [(1, 5, 7, 3), (1, 5, 7, 1)]),
    "channels_-1": (-1, [(1, 5, 7, 2), (1, 5, 7, 3)]),
    "channels_3_inputs": (3, [(1, 5, 7, 3), (1, 5, 7, 1), (1, 5, 7, 2)]),
    "height": (1, [(1, 3, 7, 2), (1, 1, 7, 2)]),
    "height_3_inputs": (1, [(1, 3, 7, 2), (1, 1, 7, 2), (1, 4, 7, 2)]),
    "width": (2, [(1, 5, 1, 3), (1, 5, 6, 3)]),
    "width_-2": (-2, [(1, 5, 3, 3), (1, 5, 2, 3), (1, 5, 1, 3)]),
    "batch": (0, [(1, 5, 3, 3), (2, 5, 3, 3)]),
}


@pytest.mark.parametrize("case", CONCATS)
def test_concat(case):
    """ConcatV2 on every axis, 2 and 3 inputs, negative axes."""
    axis, shapes = CONCATS[case]
    check(lambda *xs: tf.concat(list(xs), axis=axis), *shapes, exact=True)


def test_concat_of_many_inputs():
    """ConcatV2 of more inputs than the core concatenates at once (16)."""
    check(lambda x: tf.concat([x * float(i) for i in range(19)], axis=3), (1, 3, 2, 1))


@pytest.mark.parametrize(
    "case",
    [("split", 3, 3), ("split", 1, 3), ("split", 2, 1), ("split_v", 3, [1, 2, -1]), ("split_v", 1, [2, 1])],
    ids=str,
)
def test_split(case):
    """Split (equal parts) and SplitV (sizes, one -1) on channels, height and width."""
    kind, axis, parts = case
    shape = (1, 3, 5, 6)

    def build(x):
        return tf.split(x, parts, axis=axis)

    check(build, shape, exact=True)


STRIDED = {
    "ranges": lambda x: x[:, 1:-1, 2:, :2],
    "negative": lambda x: x[:, -3:, -4:-1, -2:],
    "masks": lambda x: x[:, :3, 1:, 1:],
    "shrink_height": lambda x: x[:, 2, :, :],
    "shrink_channel": lambda x: x[..., 0],
    "shrink_negative": lambda x: x[:, :, -1],
    "shrink_batch": lambda x: x[0],
    "shrink_batch_new_axis": lambda x: x[0, :, tf.newaxis],
    "new_axis_last": lambda x: x[0, ..., 1:2, tf.newaxis],
    "ellipsis": lambda x: x[..., 1:3],
    "clamped": lambda x: x[:, -100:100, 2:50],
    "empty_to_one": lambda x: x[:, 1:2, 3:4, 1:2],
}


@pytest.mark.parametrize("case", STRIDED)
def test_strided_slice(case):
    """StridedSlice on activations: ranges, negative and clamped indices, begin/end masks, shrink_axis,
    new_axis and ellipsis."""
    check(STRIDED[case], (1, 5, 7, 3), exact=True)


def test_strided_slice_with_a_stride_is_refused():
    """A strided (step 2) or reversed slice of an activation is refused by design, naming the op."""
    refuses(lambda x: x[:, ::2], (1, 5, 7, 3), match="StridedSlice.*stride")
    refuses(lambda x: x[:, ::-1], (1, 5, 7, 3), match="StridedSlice.*stride")


@pytest.mark.parametrize("begin, size", [([0, 1, 2, 0], [-1, 3, -1, 2]), ([0, 0, 0, 2], [1, 5, 7, 1])])
def test_slice(begin, size):
    """Slice with sizes and -1 (to the end)."""
    check(lambda x: tf.slice(x, begin, size), (1, 5, 7, 3), exact=True)


def test_unpack_and_pack():
    """Unpack along channels and Pack back in another order; Unpack of the batch; Pack into a new batch axis."""

    def channels(x):
        parts = tf.unstack(x, axis=3)
        return tf.stack(parts[::-1], axis=-1), parts[1]

    check(channels, (1, 5, 7, 3), exact=True)

    def batch(x):
        (img,) = tf.unstack(x, axis=0)
        return img, tf.stack([img * 2.0], axis=0)

    check(batch, (1, 5, 7, 3), exact=True)


@pytest.mark.parametrize("multiples", [[1, 2, 3, 1], [1, 1, 1, 3], [1, 3, 1, 2], [2, 1, 1, 1]], ids=str)
def test_tile(multiples):
    """Tile of an image on every axis."""
    check(lambda x: tf.tile(x, multiples), (1, 3, 5, 2), exact=True)


RESHAPES = {
    "drop_batch": ((1, 5, 7, 3), lambda x: tf.reshape(x, [5, 7, 3])),
    "drop_channel": ((1, 5, 7, 1), lambda x: tf.reshape(x, [1, 5, 7])),
    "to_matrix": ((1, 1, 1, 6), lambda x: tf.reshape(x, [1, 6])),
    "to_vector": ((1, 1, 1, 6), lambda x: tf.reshape(x, [-1])),
    "moved_one": ((1, 5, 1, 3), lambda x: tf.reshape(x, [1, 1, 5, 3])),
    "round_trip": ((1, 5, 7, 3), lambda x: tf.reshape(tf.reshape(x, [5, 7, 3]) * 2.0, [1, 5, 7, 3])),
    "squeeze": ((1, 5, 1, 3), lambda x: tf.squeeze(x)),
    "squeeze_axis": ((1, 5, 1, 3), lambda x: tf.squeeze(x, axis=[2])),
    "squeeze_negative": ((1, 5, 7, 1), lambda x: tf.squeeze(x, axis=[-1])),
    "expand_dims": ((1, 5, 7, 3), lambda x: tf.expand_dims(x[0], 0) + 1.0),
    "expand_dims_last": ((1, 5, 7, 1), lambda x: tf.expand_dims(tf.squeeze(x, [3]), -1)),
}


@pytest.mark.parametrize("case", RESHAPES)
def test_reshape_squeeze_expand_dims(case):
    """Reshape/Squeeze/ExpandDims that only add or remove size-1 axes are views."""
    shape, fn = RESHAPES[case]
    check(fn, shape, exact=True)


def test_unbatched_input_expanded_into_a_conv():
    """An unbatched HWC placeholder, ExpandDims to a batch of one, a convolution, Squeeze back (ModelScope's
    input_image convention)."""
    w = _he((3, 3, 3, 2), 27)
    check(lambda x: tf.squeeze(tf.nn.conv2d(tf.expand_dims(x, 0), w, 1, "SAME"), [0]), (7, 5, 3))


def _transposed_twice(x):
    return tf.transpose(tf.transpose(x, [0, 3, 2, 1]) + 1.0, [0, 3, 2, 1])


SIZE_ONE_CHAINS = {
    "squeeze_expand_channel_1": ((1, 4, 3, 1), lambda x: tf.expand_dims(tf.squeeze(x, [0]), 0)),
    "squeeze_expand_height_1": ((1, 1, 7, 2), lambda x: tf.expand_dims(tf.squeeze(x, [0]), 0)),
    "squeeze_all_reshape_back": ((1, 1, 1, 3), lambda x: tf.reshape(tf.squeeze(x), [1, 1, 1, 3])),
    "reshape_drop_batch_and_back": (
        (1, 1, 7, 2),
        lambda x: tf.reshape(tf.reshape(x, [1, 7, 2]), [1, 1, 7, 2]),
    ),
    "transpose_size_one_axes": ((1, 4, 1, 1), _transposed_twice),
    "unstack_stack_width_1": ((1, 5, 1, 3), lambda x: tf.stack(tf.unstack(x, axis=0), axis=0)),
}


@pytest.mark.parametrize("case", SIZE_ONE_CHAINS)
@pytest.mark.parametrize("after", ["conv", "pool", "resize", "add"])
def test_size_one_axes_keep_the_image_layout(case, after):
    """Views through size-1 axes (Squeeze then ExpandDims, Reshape, Transpose, Unpack/Pack) give back an image
    the NHWC ops take and that combines with the original: a size-1 axis holds no data, whichever core axis
    stands for it."""
    shape, view = SIZE_ONE_CHAINS[case]
    w = _he((3, 3, shape[3], 4), 9 * shape[3])
    ops = {
        "conv": lambda y, x: tf.nn.conv2d(y, w, 1, "SAME"),
        "pool": lambda y, x: tf.nn.max_pool2d(y, 2, 1, "SAME"),
        "resize": lambda y, x: v1.image.resize_bilinear(y, (3, 5)),
        "add": lambda y, x: tf.concat([y - x, x], axis=3),
    }
    check(lambda x: ops[after](view(x), x), shape)


def test_reshape_moving_data_runs_on_the_host():
    """A Reshape that merges axes moves data between axes: the core has no such op, so it and what follows run on
    the host (test_tf_detector_graphs.py); an op the host cannot run after it is refused, naming the op."""
    check(lambda x: tf.reshape(x, [1, 35, 3]) * 2.0, (1, 5, 7, 3))
    refuses(
        lambda x: tf.nn.max_pool2d(tf.reshape(x, [1, 7, 5, 3]), 2, 1, "VALID"),
        (1, 5, 7, 3),
        match="moves data",
    )


@pytest.mark.parametrize(
    "perm",
    [[0, 3, 1, 2], [0, 2, 1, 3], [3, 1, 2, 0], [0, 1, 2, 3]],
    ids=str,
)
def test_transpose(perm):
    """A Transpose as output, one through an element-wise op and back (round trip), and one followed by a
    per-channel constant in its own layout."""
    inverse = list(np.argsort(perm))
    check(lambda x: tf.transpose(x, perm), (1, 5, 7, 3), exact=True)
    check(lambda x: tf.transpose(tf.nn.relu(tf.transpose(x, perm)), inverse), (1, 5, 7, 3), exact=True)
    k = _const([(1, 5, 7, 3)[i] for i in perm], seed=4)
    check(lambda x: tf.transpose(tf.transpose(x, perm) * k, inverse), (1, 5, 7, 3))


@pytest.mark.parametrize("pads", [[1, 2, 3, 0], [0, 0, 1, 1], [4, 4, 4, 4]], ids=str)
@pytest.mark.parametrize("value", [None, 0.0, -2.5])
def test_pad(pads, value):
    """Pad and PadV2 (constant values) of the spatial axes."""
    t, b, l_, r = pads
    paddings = [[0, 0], [t, b], [l_, r], [0, 0]]
    fn = (
        (lambda x: tf.pad(x, paddings))
        if value is None
        else (lambda x: tf.pad(x, paddings, constant_values=value))
    )
    for shape in [(1, 1, 1, 2), (1, 5, 7, 3)]:
        check(fn, shape, exact=True)


def test_pad_of_channels_is_refused():
    """Padding the channel axis of an activation is refused by design, naming the op."""
    refuses(lambda x: tf.pad(x, [[0, 0], [0, 0], [0, 0], [1, 2]]), (1, 5, 7, 3), match="Pad.*channel")


@pytest.mark.parametrize("mode", ["REFLECT", "SYMMETRIC"])
@pytest.mark.parametrize("size", [(2, 2), (5, 7), (1, 4), (9, 3)], ids=str)
def test_mirror_pad(mode, size):
    """MirrorPad REFLECT (at most size - 1) and SYMMETRIC (at most size), up to the largest pads TF allows,
    asymmetric ones and none."""
    h, w = size
    most = (h - 1, w - 1) if mode == "REFLECT" else (h, w)
    for t, b, l_, r in [
        (most[0], most[0], most[1], most[1]),
        (most[0], 0, 0, most[1]),
        (min(1, most[0]), 0, 1, 0),
    ]:
        if mode == "REFLECT" and w == 1 and (l_ or r):
            continue
        paddings = [[0, 0], [t, b], [l_, r], [0, 0]]
        check(lambda x, p=paddings: tf.pad(x, p, mode=mode), (1, h, w, 3), exact=True)


# --------------------------------------------------------------------------------------------------
# resize
# --------------------------------------------------------------------------------------------------

RESIZE_FLAGS = [(False, False), (True, False), (False, True)]  # (align_corners, half_pixel_centers) TF allows
RESIZE_SIZES = [
    ((5, 7), (11, 13)),
    ((11, 13), (5, 7)),
    ((1, 1), (3, 4)),
    ((5, 7), (1, 1)),
    ((4, 4), (8, 8)),
    ((1, 6), (3, 1)),
    ((8, 6), (4, 3)),
    ((5, 7), (5, 7)),
    ((33, 31), (2, 3)),
    ((2, 3), (33, 31)),
]


@pytest.mark.parametrize("sizes", RESIZE_SIZES, ids=str)
@pytest.mark.parametrize("flags", RESIZE_FLAGS, ids=["legacy", "align_corners", "half_pixel"])
@pytest.mark.parametrize("op", ["ResizeBilinear", "ResizeNearestNeighbor"])
def test_resize(op, flags, sizes):
    """ResizeBilinear/ResizeNearestNeighbor with each (align_corners, half_pixel_centers) TF allows, up, down,
    to odd sizes, from and to 1 pixel."""
    align, half = flags
    (h, w), out = sizes
    fn = v1.image.resize_bilinear if op == "ResizeBilinear" else v1.image.resize_nearest_neighbor
    # nearest picks pixels: exact; bilinear weights agree to rounding
    check(
        lambda x: fn(x, out, align_corners=align, half_pixel_centers=half),
        (1, h, w, 3),
        exact=op != "ResizeBilinear",
    )


BATCHED = {
    "conv": lambda x: tf.nn.conv2d(x, _he((3, 3, 17, 5), 153), [1, 2, 2, 1], "SAME"),
    "depthwise": lambda x: tf.nn.depthwise_conv2d(x, _he((3, 3, 17, 2), 9), [1, 1, 1, 1], "VALID"),
    "deconv": lambda x: v1.nn.conv2d_transpose(
        x, _he((3, 3, 4, 17), 153), (2, 15, 13, 4), [1, 2, 2, 1], "SAME"
    ),
    "resize_bilinear": lambda x: v1.image.resize_bilinear(x, (11, 3), half_pixel_centers=True),
    "resize_nearest": lambda x: v1.image.resize_nearest_neighbor(x, (17, 13), align_corners=True),
    "pad": lambda x: tf.pad(x, [[0, 0], [2, 1], [0, 3], [0, 0]], constant_values=0.5),
    "mirror_pad": lambda x: tf.pad(x, [[0, 0], [7, 1], [6, 6], [0, 0]], mode="REFLECT"),
    "concat": lambda x: tf.concat([x, tf.nn.relu(x)[..., :5], x[:, :, :, 16:]], axis=3),
    "concat_width": lambda x: tf.concat([x, x[:, :, :2]], axis=2),
    "slice": lambda x: x[:, 1:-2, 3:, 4:9],
    "max_pool": lambda x: tf.nn.max_pool2d(x, 3, 2, "SAME"),
    "avg_pool": lambda x: tf.nn.avg_pool2d(x, 3, 2, "SAME"),
    "mean_matmul": lambda x: tf.matmul(tf.reduce_mean(x, [1, 2]), _he((17, 6), 17)),
    "tile": lambda x: tf.tile(x, [1, 2, 1, 2]),
    "mul_per_pixel": lambda x: x * tf.reduce_mean(x, axis=3, keepdims=True),
}


@pytest.mark.parametrize("op", BATCHED)
def test_batch_of_two_with_many_channels(op):
    """The ops on a batch of two with 17 channels (odd, past a vector width) at odd sizes."""
    check(
        BATCHED[op],
        (2, 8, 7, 17),
        exact=op in ("pad", "mirror_pad", "concat", "concat_width", "slice", "tile"),
    )


def test_resize_with_both_flags_is_refused():
    """align_corners and half_pixel_centers together (TF refuses to run it) are refused, naming the op."""
    refuses(
        lambda x: tf.raw_ops.ResizeBilinear(
            images=x, size=[8, 8], align_corners=True, half_pixel_centers=True
        ),
        (1, 4, 4, 3),
        match="ResizeBilinear.*align_corners",
    )


def test_resize_sized_by_a_shape_subgraph():
    """Resizes whose sizes come from tf.shape of the input at run time: tf.shape(x)[1:3] * 2 and a
    Cast/Round/FloorDiv chain; one TfGraph runs several input sizes."""

    def build(x):
        up = v1.image.resize_bilinear(x, tf.shape(x)[1:3] * 2, half_pixel_centers=True)
        hw = tf.cast(tf.shape(x)[1:3], tf.float32)
        odd = tf.cast(tf.round(hw * 1.5), tf.int32) // 2 * 2 + 1
        near = v1.image.resize_nearest_neighbor(x, odd, align_corners=True)
        return up, near

    check(build, (1, 5, 7, 3), dynamic=True, runs=[[(1, 1, 1, 3)], [(1, 12, 9, 3)], [(1, 5, 7, 3)]])


# --------------------------------------------------------------------------------------------------
# matmul, cast, shapes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transpose_b", [False, True])
def test_matmul_after_global_mean(transpose_b):
    """Mean over [1, 2] (keep_dims False) then MatMul by a constant (transpose_b either way), BiasAdd, Softmax."""
    c, k = 6, 5
    w = _he((k, c) if transpose_b else (c, k), c)
    b = _const(k, seed=6)

    def build(x):
        f = tf.reduce_mean(x, axis=[1, 2])
        return tf.nn.softmax(tf.nn.bias_add(tf.matmul(f, w, transpose_b=transpose_b), b))

    check(build, (1, 9, 7, c))


@pytest.mark.parametrize("rows", [1, 3])
def test_matmul_of_a_matrix_input(rows):
    """MatMul of a 2-D placeholder by a constant."""
    w = _he((4, 7), 4)
    check(lambda x: tf.matmul(x, w), (rows, 4))


def test_cast_to_uint8_at_the_output():
    """clip_by_value then Cast to uint8 truncates (12.7 -> 12), also through a Squeeze after the cast."""

    def build(x):
        y = tf.clip_by_value(x * 300.0, 0.0, 255.0)
        u = tf.cast(y, tf.uint8)
        return u, tf.squeeze(u, [0]), tf.cast(y, tf.int32)

    m = check(build, (1, 7, 5, 3), exact=True)
    assert m.run(np.full((1, 7, 5, 3), 12.7 / 300, np.float32))[0].max() == 12


def test_inputs_in_the_order_given():
    """Inputs are fed in the order the caller lists them, whatever the graph's topological order (here the
    second placeholder is needed first), and listed in either order."""

    def build(a, b):
        return tf.nn.relu(b) + tf.reduce_mean(a, axis=[1, 2], keepdims=True)

    g, ins, outs = _build(build, [(1, 5, 4, 2), (1, 3, 7, 2)])
    a, b = _const((1, 5, 4, 2), seed=1), _const((1, 3, 7, 2), seed=2)
    (want,) = run_frozen(g, {"x0:0": a, "x1:0": b}, outs)
    for order, feeds in [(["x0:0", "x1:0"], (a, b)), (["x1:0", "x0:0"], (b, a))]:
        m = TfGraph(g, order, outs, threads=2)
        _compare(m.run(*feeds), [want], False, RTOL, ATOL)
        _no_ref(m)
    with pytest.raises(InvalidModelError, match="twice"):
        TfGraph(g, ["x0:0", "x0:0"], outs)


def test_output_from_the_shape_only():
    """An output computed from tf.shape of the input alone is evaluated on the host: int32, exact."""

    def build(x):
        s = tf.shape(x)
        hw = s[1:3]
        return hw * 2 + s[3], tf.reduce_prod(s), tf.size(x), tf.cast(tf.cast(hw, tf.float32) / 3.0, tf.int32)

    m = check(build, (1, 5, 7, 3), dynamic=True, runs=[[(1, 33, 1, 3)]])
    outs = m.run(np.zeros((1, 9, 4, 3), np.float32))
    assert outs[0].dtype == np.int32 and outs[0].tolist() == [21, 11]


def test_host_ops_on_shapes():
    """Shape arithmetic TF1 graphs hold, evaluated on the host to TF's values and dtypes: Select with a vector
    condition picking rows, SelectV2, FloorDiv/FloorMod/Div of negative values, Range, Fill, Prod, Cast/Round."""

    def build(x):
        s = tf.shape(x)
        hw = s[1:3]
        neg = -hw - 1
        rows = tf.stack([hw, neg])  # (2, 2)
        return (
            tf.raw_ops.Select(condition=hw > 6, x=rows, y=rows * 10),
            tf.raw_ops.SelectV2(condition=hw > 6, t=hw, e=neg),
            tf.math.floordiv(neg, 4),
            tf.math.floormod(neg, 4),
            tf.raw_ops.Div(x=neg, y=tf.constant(4)),
            tf.range(0, s[2], 2),
            tf.fill(tf.stack([s[1], 2]), 3),
            tf.reduce_prod(hw),
            tf.cast(tf.round(tf.cast(hw, tf.float32) * 0.5), tf.int32),
        )

    check(build, (1, 5, 7, 3), dynamic=True, runs=[[(1, 12, 3, 3)], [(1, 1, 1, 3)]])


# --------------------------------------------------------------------------------------------------
# TF1 control flow on constants
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("taken", [True, False])
@pytest.mark.parametrize("predicate", ["constant", "placeholder_with_default"])
def test_cond_on_a_constant_folds(predicate, taken):
    """A v1 cond (Switch/Merge) on a constant or a PlaceholderWithDefault predicate folds to the taken branch:
    the other branch's ops disappear from the graph."""

    def build(x):
        if predicate == "constant":
            pred = tf.constant(taken)
        else:
            pred = v1.placeholder_with_default(taken, [], name="training_flag")
        return v1.cond(pred, lambda: tf.nn.sigmoid(x), lambda: tf.nn.tanh(x) * 2.0)

    g, ins, outs = _build(build, [(1, 5, 7, 3)])
    ops = {n.op for n in tf.compat.v1.GraphDef.FromString(g).node}
    assert {"Switch", "Merge"} <= ops
    m = check(build, (1, 5, 7, 3))
    hist = m.op_histogram()
    assert "Switch" not in hist and "Merge" not in hist
    assert ("Sigmoid" in hist) == taken and ("Tanh" in hist) != taken, hist


@pytest.mark.parametrize("taken", [True, False])
def test_cond_of_constants_follows_control_inputs(taken):
    """A cond whose branches return constants: a branch's constants depend on its Switch by control input only,
    so deadness must follow control inputs for the Merge to take the right one."""
    a, b = _const((1, 1, 1, 3), seed=1), _const((1, 1, 1, 3), seed=2)

    def build(x):
        pred = v1.placeholder_with_default(taken, [], name="flag")
        return x + v1.cond(pred, lambda: tf.constant(a), lambda: tf.constant(b))

    check(build, (1, 5, 7, 3))


def test_nested_conds_fold():
    """Conds nested in a taken and an untaken branch fold too."""

    def build(x):
        outer = tf.constant(True)
        inner = v1.placeholder_with_default(False, [], name="inner")

        def taken():
            return v1.cond(inner, lambda: tf.nn.relu(x), lambda: tf.nn.sigmoid(x) * 3.0)

        def untaken():
            return v1.cond(inner, lambda: tf.nn.tanh(x), lambda: x * 5.0)

        return v1.cond(outer, taken, untaken)

    m = check(build, (1, 5, 7, 3))
    hist = m.op_histogram()
    assert "Sigmoid" in hist and "Tanh" not in hist and "Relu" not in hist, hist


def test_cond_on_an_activation_is_refused():
    """A cond whose predicate depends on the input (a data-dependent branch) is refused, naming the Switch."""

    def build(x):
        return v1.cond(tf.reduce_mean(x) > 0, lambda: tf.nn.relu(x), lambda: x * 2.0)

    refuses(build, (1, 5, 7, 3), match="Switch .*predicate is not a constant")


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, fn",
    [("Cumsum", lambda x: tf.math.cumsum(x, axis=3)), ("TopKV2", lambda x: tf.nn.top_k(x, 2).values)],
)
def test_unsupported_op_is_named_at_load_time(op, fn):
    """An op outside the supported set fails at load time, naming the op and the node."""

    def build(x):
        return fn(tf.nn.relu(x, name="act"))

    g, ins, outs = _build(build, [(1, 5, 7, 3)])
    node = next(n.name for n in tf.compat.v1.GraphDef.FromString(g).node if n.op == op)
    with pytest.raises(InvalidModelError, match=f"unsupported TensorFlow ops: {op} .*{node!r}"):
        TfGraph(g, ins, outs)


def test_unsupported_ops_outside_the_outputs_are_ignored():
    """An unsupported op on an untaken cond branch, or not feeding the requested outputs, is pruned away."""

    def build(x):
        flag = v1.placeholder_with_default(False, [], name="flag")
        y = v1.cond(flag, lambda: tf.math.cumsum(x, axis=3), lambda: tf.nn.relu(x))
        tf.nn.top_k(x, 2, name="unused")
        return y

    check(build, (1, 5, 7, 3))


def _edited(g, op, key, value):
    """``g`` with attribute ``key`` of every ``op`` node set to ``value`` (a string or an int list)."""
    gd = tf.compat.v1.GraphDef.FromString(g)
    for n in gd.node:
        if n.op == op:
            if isinstance(value, bytes):
                n.attr[key].s = value
            else:
                del n.attr[key].list.i[:]
                n.attr[key].list.i.extend(value)
    return gd.SerializeToString()


@pytest.mark.parametrize(
    "op, key, value, build",
    [
        ("Conv2D", "data_format", b"NCHW", lambda x: tf.nn.conv2d(x, _he((3, 3, 3, 2), 27), 1, "SAME")),
        ("Conv2D", "strides", [2, 1, 1, 1], lambda x: tf.nn.conv2d(x, _he((3, 3, 3, 2), 27), 1, "SAME")),
        ("MaxPool", "data_format", b"NCHW", lambda x: tf.nn.max_pool2d(x, 2, 2, "SAME")),
        ("BiasAdd", "data_format", b"NCHW", lambda x: tf.nn.bias_add(tf.nn.relu(x), _const(3))),
        ("AvgPool", "padding", b"EXPLICIT", lambda x: tf.nn.avg_pool2d(x, 2, 2, "SAME")),
        ("Conv2D", "dilations", [1, 1, 1, 2], lambda x: tf.nn.conv2d(x, _he((3, 3, 3, 2), 27), 1, "SAME")),
        (
            "DepthwiseConv2dNative",
            "data_format",
            b"NCHW",
            lambda x: tf.nn.depthwise_conv2d(x, _he((3, 3, 3, 1), 9), [1, 1, 1, 1], "SAME"),
        ),
        (
            "Conv2DBackpropInput",
            "data_format",
            b"NCHW",
            lambda x: v1.nn.conv2d_transpose(x, _he((2, 2, 4, 3), 12), (1, 10, 14, 4), [1, 2, 2, 1], "SAME"),
        ),
        (
            "FusedBatchNormV3",
            "data_format",
            b"NCHW",
            lambda x: v1.nn.fused_batch_norm(
                tf.nn.relu(x), *[np.ones(3, np.float32)] * 4, is_training=False, epsilon=1e-3
            )[0],
        ),
        ("MirrorPad", "mode", b"EDGE", lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")),
    ],
    ids=[
        "conv_nchw",
        "conv_batch_stride",
        "maxpool_nchw",
        "biasadd_nchw",
        "avgpool_explicit",
        "conv_channel_dilation",
        "depthwise_nchw",
        "deconv_nchw",
        "batch_norm_nchw",
        "mirror_pad_edge",
    ],
)
def test_unsupported_attribute_is_named(op, key, value, build):
    """An attribute value outside the supported set names the op, the node and the attribute."""
    g, ins, outs = _build(build, [(1, 5, 7, 3)])
    g = _edited(g, op, key, value)
    with pytest.raises(InvalidModelError, match=f"{op} '[^']+': attribute {key}="):
        m = TfGraph(g, ins, outs)
        m.run(np.zeros((1, 5, 7, 3), np.float32))


def test_batch_norm_in_training_mode_is_refused():
    """A FusedBatchNorm with is_training=True (batch statistics) is refused, naming the attribute."""
    c = 3

    def build(x):
        return v1.nn.fused_batch_norm(
            tf.nn.relu(x), np.ones(c, np.float32), np.zeros(c, np.float32), is_training=True
        )[0]

    refuses(build, (1, 5, 7, 3), match="FusedBatchNorm.*is_training")


def test_missing_output_and_input_names():
    """Output or input tensors the graph does not hold, and an input that is not a placeholder, are named."""
    g, ins, outs = _build(tf.nn.relu, [(1, 5, 7, 3)])
    with pytest.raises(InvalidModelError, match="no output tensor 'nope:0'"):
        TfGraph(g, ins, ["nope:0"])
    with pytest.raises(InvalidModelError, match="no input tensor 'missing:0'"):
        TfGraph(g, ["missing:0"], outs)
    with pytest.raises(InvalidModelError, match="not a placeholder"):
        TfGraph(g, ["y0:0"], outs)


def test_wrong_input_at_run_time():
    """A wrong input rank, a size the placeholder fixes, a wrong input count and a non-numeric array raise
    InvalidInputError."""
    g, ins, outs = _build(tf.nn.relu, [(1, 5, 7, 3)], dynamic=True)
    m = TfGraph(g, ins, outs)
    with pytest.raises(InvalidInputError, match="shape"):
        m.run(np.zeros((5, 7, 3), np.float32))
    with pytest.raises(InvalidInputError, match="shape"):
        m.run(np.zeros((1, 5, 7, 4), np.float32))
    with pytest.raises(InvalidInputError, match="input"):
        m.run(np.zeros((1, 5, 7, 3), np.float32), np.zeros((1, 5, 7, 3), np.float32))
    with pytest.raises(InvalidInputError):
        m.run(np.array([["a"]]))
    (y,) = m.run(np.ones((1, 2, 3, 3), np.float32))  # and it still runs afterwards
    assert y.shape == (1, 2, 3, 3)
