"""Test-time TensorFlow frozen graphs that stand in for ModelScope's TF1 matting models (whose network exists only
inside ``tf_graph.pb``): BSHM portrait matting (``damo/cv_unet_image-matting``), universal matting
(``damo/cv_unet_universal-matting``) and the skin retouching model's skin-mask net.

Each graph follows ModelScope's convention (modelscope/pipelines/cv/image_matting_pipeline.py): the pipeline feeds
``input_image:0``, the unbatched RGB image HxWx3 (0..255, float64 there; uint8 in the skin retouching pipeline; the
placeholder is float32, which a TF1 session converts either to) and fetches ``output_png:0``, uint8 HxWx4 RGBA: the
input's RGB and the predicted alpha. The networks follow the BSHM paper's layout (coarse mask net, quality
unification net, refinement net) with the ops real TF1 graphs of that era hold: a shape subgraph computing the
network size, legacy/align-corners/half-pixel resizes, FusedBatchNorm under a v1 ``cond`` on a ``training_flag``
(Switch/Merge), MirrorPad, Pad + VALID convs, transposed and depthwise convs, channel attention.

Weights come from NumPy's seeded generator (He-scaled; BatchNorm statistics and affine randomised so BN matters);
TensorFlow is a test-only dependency, imported when a graph is built or run.
"""

import json
import math
from pathlib import Path

import numpy as np

# weight variance gain (variance = gain / fan_in; He's is 2) of the alpha heads' last conv: wide enough that alpha
# spreads over (0, 1) on the seeds tried, not so wide that the sigmoid saturates
_HEAD_GAIN = 4.0


def _tf():
    import tensorflow as tf

    return tf


def freeze(build_fn, seed=0) -> bytes:
    """Runs ``build_fn()`` in a fresh ``tf.compat.v1.Graph`` (graph mode, TF1 control flow: ``cond`` gives
    Switch/Merge, not If), initialises the variables, freezes them to constants for the output node names
    ``build_fn`` returns (a name or a list of names) and returns the serialised GraphDef. ``seed`` is the graph's
    TF random seed (for any TF initialiser ``build_fn`` uses; this module's builders draw from NumPy)."""
    tf = _tf()
    from tensorflow.python.ops import control_flow_util

    v2 = control_flow_util.ENABLE_CONTROL_FLOW_V2
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = False
    try:
        graph = tf.compat.v1.Graph()
        with graph.as_default():
            tf.compat.v1.set_random_seed(seed)
            outputs = build_fn()
            outputs = [outputs] if isinstance(outputs, str) else list(outputs)
            with tf.compat.v1.Session(graph=graph) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
                    sess, graph.as_graph_def(), outputs
                )
    finally:
        control_flow_util.ENABLE_CONTROL_FLOW_V2 = v2
    # deterministic: protobuf's map fields (node attrs) otherwise serialise in a varying order
    return frozen.SerializeToString(deterministic=True)


def run_frozen(graph_bytes, feeds, fetches):
    """The oracle: imports the GraphDef into a fresh graph and runs ``fetches`` (tensor names, 'node:0') on
    ``feeds`` ({tensor name: array}) in a ``tf.compat.v1.Session``."""
    tf = _tf()
    graph_def = tf.compat.v1.GraphDef.FromString(graph_bytes)
    graph = tf.compat.v1.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return list(sess.run(list(fetches), feed_dict=dict(feeds)))


def op_histogram(graph_bytes) -> dict:
    """{op type: node count} of a serialised GraphDef."""
    tf = _tf()
    counts = {}
    for node in tf.compat.v1.GraphDef.FromString(graph_bytes).node:
        counts[node.op] = counts.get(node.op, 0) + 1
    return dict(sorted(counts.items()))


class _Layers:
    """TF1 layer helpers whose variables draw from one seeded NumPy generator."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.training = None  # the bool tensor the BatchNorm conds switch on

    def var(self, name, value):
        tf = _tf()
        return tf.compat.v1.Variable(np.asarray(value, np.float32), name=name, use_resource=False)

    def conv(self, x, cout, k=3, stride=1, padding="SAME", bias=True, name="conv", gain=2.0):
        tf = _tf()
        cin = int(x.shape[-1])
        with tf.compat.v1.name_scope(name):
            w = self.var("weights", self.rng.normal(0, math.sqrt(gain / (k * k * cin)), (k, k, cin, cout)))
            y = tf.nn.conv2d(x, w, strides=[1, stride, stride, 1], padding=padding)
            if bias:
                y = tf.nn.bias_add(y, self.var("biases", self.rng.normal(0, 0.1, cout)))
        return y

    def depthwise(self, x, k=3, name="depthwise"):
        tf = _tf()
        cin = int(x.shape[-1])
        with tf.compat.v1.name_scope(name):
            w = self.var("depthwise_weights", self.rng.normal(0, math.sqrt(2.0 / (k * k)), (k, k, cin, 1)))
            y = tf.nn.depthwise_conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME")
            return tf.nn.bias_add(y, self.var("biases", self.rng.normal(0, 0.1, cin)))

    def deconv(self, x, like, cout, k=4, name="deconv"):
        """conv2d_transpose (Conv2DBackpropInput), stride 2 SAME, to the spatial size of ``like`` (dynamic)."""
        tf = _tf()
        cin = int(x.shape[-1])
        with tf.compat.v1.name_scope(name):
            # each output pixel sums about k*k/4 taps of every input channel
            std = math.sqrt(2.0 / (k * k * cin / 4))
            w = self.var("weights", self.rng.normal(0, std, (k, k, cout, cin)))
            s = tf.shape(like)
            out_shape = tf.stack([s[0], s[1], s[2], cout])
            y = tf.compat.v1.nn.conv2d_transpose(x, w, out_shape, strides=[1, 2, 2, 1], padding="SAME")
            return tf.nn.bias_add(y, self.var("biases", self.rng.normal(0, 0.1, cout)))

    def bn(self, x, name="bn", version=3):
        """Inference BatchNorm (FusedBatchNorm ``version`` 1, 2 or 3; 0: the unfused Rsqrt/Mul/Add form) under
        ``cond(training)``, as tf_slim's batch_norm builds it for a tensor ``is_training``: the false branch holds
        the moving statistics, the true branch batch statistics."""
        tf = _tf()
        c = int(x.shape[-1])
        with tf.compat.v1.name_scope(name):
            gamma = self.var("gamma", self.rng.uniform(0.6, 1.4, c))
            beta = self.var("beta", self.rng.normal(0, 0.2, c))
            mean = self.var("moving_mean", self.rng.normal(0, 0.3, c))
            variance = self.var("moving_variance", self.rng.uniform(0.5, 2.0, c))
            eps = 1e-3

            def inference():
                if version == 0:
                    return tf.nn.batch_normalization(x, mean, variance, beta, gamma, eps)
                op = {1: tf.raw_ops.FusedBatchNorm, 2: tf.raw_ops.FusedBatchNormV2}.get(version)
                if op is None:
                    return tf.compat.v1.nn.fused_batch_norm(
                        x, gamma, beta, mean, variance, epsilon=eps, is_training=False
                    )[0]
                return op(
                    x=x,
                    scale=gamma,
                    offset=beta,
                    mean=mean,
                    variance=variance,
                    epsilon=eps,
                    is_training=False,
                )[0]

            def training():
                return tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=eps, is_training=True)[0]

            return tf.compat.v1.cond(self.training, training, inference)

    def conv_bn(self, x, cout, act="relu", name="conv", bn_version=3, **kw):
        tf = _tf()
        with tf.compat.v1.name_scope(name):
            y = self.bn(self.conv(x, cout, **kw), version=bn_version)
            return _act(y, act)

    def res_block(self, x, name="res", raw_add=False):
        """conv-BN-ReLU-conv-BN plus the identity, then ReLU (``raw_add``: the TF1 ``Add`` op, else AddV2)."""
        tf = _tf()
        c = int(x.shape[-1])
        with tf.compat.v1.name_scope(name):
            y = self.conv_bn(x, c, name="conv1", bias=False)
            y = self.bn(self.conv(y, c, bias=False, name="conv2", gain=1.0), name="bn2")
            s = tf.raw_ops.Add(x=x, y=y) if raw_add else x + y
            return tf.nn.relu(s)


def _act(x, act):
    tf = _tf()
    return {
        None: lambda t: t,
        "relu": tf.nn.relu,
        "relu6": tf.nn.relu6,
        "elu": tf.nn.elu,
        "leaky": lambda t: tf.nn.leaky_relu(t, alpha=0.2),
        "tanh": tf.nn.tanh,
    }[act](x)


def _network_size(img, long_side, multiple, minimum):
    """The shape subgraph: (h, w) scaled down (never up) so the long side is at most ``long_side``, rounded to a
    multiple of ``multiple``, at least ``minimum``: Shape, StridedSlice, Cast, Pack, Maximum, RealDiv, Minimum,
    Mul, Round."""
    tf = _tf()
    with tf.compat.v1.name_scope("network_size"):
        shape = tf.shape(img)
        h, w = shape[0], shape[1]
        hw = tf.cast(tf.stack([h, w]), tf.float32)
        longest = tf.maximum(tf.cast(h, tf.float32), tf.cast(w, tf.float32))
        scale = tf.minimum(float(long_side) / longest, 1.0)
        size = tf.cast(tf.round(hw * scale / float(multiple)), tf.int32) * multiple
        return tf.maximum(size, minimum)


def _rgba_output(img, alpha):
    """alpha (1xhxwx1 in 0..1, network size) resized to the input's size, x255, beside the input's RGB, clipped to
    0..255, unbatched and cast (truncating) to uint8: the ``output_png`` node."""
    tf = _tf()
    with tf.compat.v1.name_scope("output"):
        alpha = tf.compat.v1.image.resize_bilinear(alpha, tf.shape(img)[0:2])
        x = tf.expand_dims(img, 0)
        rgba = tf.concat([x, alpha * 255.0], axis=3)
        rgba = tf.clip_by_value(rgba, 0.0, 255.0)
        rgba = tf.squeeze(rgba, axis=[0])
    return tf.cast(rgba, tf.uint8, name="output_png")


def _inputs(layers):
    tf = _tf()
    img = tf.compat.v1.placeholder(tf.float32, [None, None, 3], name="input_image")
    layers.training = tf.compat.v1.placeholder_with_default(False, [], name="training_flag")
    return img


def bshm_graph(seed=0, width=16) -> bytes:
    """A BSHM-style portrait matting graph: coarse mask UNet (3 levels), quality unification net, refinement net;
    ``input_image`` float32 [H, W, 3] -> ``output_png`` uint8 [H, W, 4]."""
    c = width

    def build():
        tf = _tf()
        n = _Layers(seed)
        img = _inputs(n)
        size = _network_size(img, long_side=512, multiple=32, minimum=32)
        with tf.compat.v1.name_scope("preprocess"):
            x = tf.expand_dims(img, 0)
            mean = tf.constant([123.68, 116.78, 103.94], tf.float32)
            std = tf.constant([58.4, 57.1, 57.4], tf.float32)
            x = (x - mean) / std
            x = tf.compat.v1.image.resize_bilinear(x, size)  # TF1's legacy mode
        with tf.compat.v1.name_scope("coarse"):
            e0 = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
            e0 = n.conv_bn(e0, c, padding="VALID", name="conv0")
            e0 = n.conv_bn(e0, c, name="conv1", bias=False)
            e1 = tf.nn.max_pool2d(e0, 2, 2, "VALID")
            e1 = n.conv_bn(e1, 2 * c, act="leaky", name="conv2")
            e1 = tf.nn.relu(n.depthwise(e1))
            e2 = tf.pad(e1, [[0, 0], [1, 1], [1, 1], [0, 0]])
            e2 = n.conv_bn(e2, 4 * c, stride=2, padding="VALID", name="conv3_s2")
            e2 = n.conv_bn(e2, 4 * c, name="conv4", bias=False)
            with tf.compat.v1.name_scope("attention"):
                a = tf.reduce_mean(e2, axis=[1, 2], keepdims=True)
                a = tf.nn.sigmoid(n.conv(a, 4 * c, k=1, name="fc", gain=1.0))
                e2 = e2 * a
            u1 = tf.nn.relu(n.deconv(e2, e1, 2 * c, name="up1"))
            u1 = n.conv_bn(tf.concat([u1, e1], axis=3), 2 * c, name="conv5")
            u0 = tf.compat.v1.image.resize_nearest_neighbor(u1, tf.shape(e0)[1:3], align_corners=True)
            u0 = n.conv_bn(tf.concat([u0, e0], axis=3), c, name="conv6")
            coarse = tf.nn.sigmoid(n.conv(u0, 1, name="mask", gain=1.0))
        with tf.compat.v1.name_scope("quality"):
            q = n.conv(tf.concat([x, coarse], axis=3), c, name="conv0")
            q = tf.nn.relu6(q)
            q = n.conv_bn(q, c, act="elu", name="conv1", bn_version=1)
            q = tf.nn.sigmoid(n.conv(q, 1, name="mask", gain=1.0))
        with tf.compat.v1.name_scope("refine"):
            r = n.conv_bn(tf.concat([x, coarse, q], axis=3), c, name="conv0", bn_version=1)
            h = tf.compat.v1.image.resize_bilinear(r, size // 2, half_pixel_centers=True)
            h = n.conv_bn(h, 2 * c, name="conv1", bn_version=1)
            h = tf.compat.v1.image.resize_bilinear(h, tf.shape(r)[1:3], align_corners=True)
            r = tf.nn.relu(n.conv(tf.concat([r, h], axis=3), c, name="conv2"))
            alpha = tf.nn.sigmoid(n.conv(r, 1, name="alpha", gain=_HEAD_GAIN))
        return _rgba_output(img, alpha).op.name

    return freeze(build, seed)


def universal_matting_graph(seed=0, width=16) -> bytes:
    """A universal-matting sibling: a 5-level residual encoder-decoder on a network size that is a multiple of 8
    (so odd sizes occur deeper down: SAME MaxPool/AvgPool/strided conv with asymmetric padding), AvgPool, Add and
    AddV2 residuals, an unfused BatchNorm and FusedBatchNorm V2, a Tanh gate, a 2-class Softmax trimap head and a
    Tanh alpha head; same ``input_image`` / ``output_png`` convention."""
    c = width

    def build():
        tf = _tf()
        n = _Layers(seed)
        img = _inputs(n)
        size = _network_size(img, long_side=640, multiple=8, minimum=32)
        with tf.compat.v1.name_scope("preprocess"):
            x = tf.expand_dims(img, 0) * (1.0 / 127.5) - 1.0
            x = tf.compat.v1.image.resize_bilinear(x, size)
        with tf.compat.v1.name_scope("encoder"):
            l0 = n.conv_bn(x, c, name="conv0", bn_version=2)  # S
            l1 = tf.nn.max_pool2d(l0, 3, 2, "SAME")  # S/2
            l1 = n.res_block(l1, name="res1", raw_add=True)
            l2 = tf.nn.avg_pool2d(l1, 3, 2, "SAME")  # S/4
            l2 = n.conv_bn(l2, 2 * c, k=1, name="proj2")
            l2 = n.res_block(l2, name="res2")
            l3 = n.conv_bn(l2, 4 * c, stride=2, name="conv3_s2", bn_version=0)  # S/8, often odd
            with tf.compat.v1.name_scope("gate"):
                l3 = l3 * (1.0 + tf.nn.tanh(n.conv(l3, 4 * c, k=1, name="conv", gain=1.0)))
            l4 = tf.nn.max_pool2d(l3, 2, 2, "SAME")  # S/16
            l4 = n.res_block(l4, name="res4", raw_add=True)
        with tf.compat.v1.name_scope("decoder"):
            d3 = tf.nn.relu(tf.raw_ops.Add(x=n.deconv(l4, l3, 4 * c, k=3, name="up3"), y=l3))
            d2 = tf.compat.v1.image.resize_bilinear(d3, tf.shape(l2)[1:3], align_corners=True)
            d2 = n.conv_bn(tf.concat([d2, l2], axis=3), 2 * c, act="relu6", name="conv2")
            d1 = tf.compat.v1.image.resize_nearest_neighbor(d2, tf.shape(l1)[1:3])
            d1 = n.conv_bn(tf.concat([d1, l1], axis=3), c, name="conv1")
            d0 = tf.compat.v1.image.resize_bilinear(d1, tf.shape(l0)[1:3], half_pixel_centers=True)
            d0 = tf.nn.relu(n.conv(tf.concat([d0, l0], axis=3), c, name="conv0"))
        with tf.compat.v1.name_scope("trimap"):
            trimap = tf.nn.softmax(n.conv(d0, 2, k=1, name="logits", gain=_HEAD_GAIN), axis=-1)
            fg = trimap[:, :, :, 1:2]
        with tf.compat.v1.name_scope("matting"):
            m = n.conv(tf.concat([d0, trimap], axis=3), c, name="conv0")
            m = tf.nn.elu(m)
            t = tf.nn.tanh(n.conv(m, 1, name="alpha", gain=_HEAD_GAIN))
            alpha = 0.5 * fg + 0.25 * (t + 1.0)
        return _rgba_output(img, alpha).op.name

    return freeze(build, seed)


def skin_mask_graph(seed=0) -> bytes:
    """A small skin-mask net with the same convention (the skin retouching pipeline feeds uint8 RGB and reads the
    last channel of ``output_png``): conv, strided conv, bilinear resize back, sigmoid mask."""

    def build():
        tf = _tf()
        n = _Layers(seed)
        img = _inputs(n)
        x = tf.expand_dims(img, 0) / 255.0 - 0.5
        y = tf.nn.relu(n.conv(x, 8, name="conv0"))
        y = tf.nn.relu(n.conv(y, 8, stride=2, name="conv1"))
        y = n.conv_bn(y, 8, name="conv2")
        y = tf.compat.v1.image.resize_bilinear(y, tf.shape(x)[1:3])
        mask = tf.nn.sigmoid(n.conv(y, 1, name="mask", gain=2 * _HEAD_GAIN))
        return _rgba_output(img, mask).op.name

    return freeze(build, seed)


PIPELINE_TYPES = {"portrait-matting": "unet-image-matting", "universal-matting": "unet-universal-matting"}
GRAPHS = {"portrait-matting": bshm_graph, "universal-matting": universal_matting_graph}


def make_matting_dir(path, task="portrait-matting", graph=None, seed=0) -> str:
    """A ModelScope matting model directory: configuration.json (framework tensorflow, no ``model`` section:
    ModelScope would then try to build a torch model) and ``tf_graph.pb`` (``graph`` bytes, else the task's
    stand-in graph)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = {"framework": "tensorflow", "task": task, "pipeline": {"type": PIPELINE_TYPES[task]}}
    (path / "configuration.json").write_text(json.dumps(config, indent=2))
    if graph is None:
        graph = GRAPHS[task](seed=seed)
    (path / "tf_graph.pb").write_bytes(graph)
    return str(path)


def modelscope_tf_pipeline(task, model_dir, **kwargs):
    """ModelScope's ``pipeline(task, model=model_dir)`` for its TF1-graph pipelines (matting, ...), built in a
    fresh ``tf.compat.v1.Graph``. ModelScope 1.40's ImageMattingPipeline opens ``tf.Session()`` on the process-wide
    default graph and imports ``tf_graph.pb`` into it with ``name=''``: a second such pipeline in one process gets
    its nodes renamed (``output_png_1``) while it fetches ``output_png:0``, so it silently runs the first model."""
    tf = _tf()
    from modelscope.pipelines import pipeline

    with tf.compat.v1.Graph().as_default():
        return pipeline(task, model=model_dir, **kwargs)
