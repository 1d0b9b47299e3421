"""The DCT-Net cartoon model directories of tests/support/cartoon_graphs.py are what they claim: the frozen graphs
hold what the real ones hold (TF1 conds and while loops, NMS, the generator's depthwise box filter), the face
detector's scores sit in their bands whatever the image, and ModelScope's own ImageCartoonPipeline runs on them,
its face analyser finding exactly the intended faces on real photos."""

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("tf_slim")
pytest.importorskip("modelscope")

from support import cartoon_graphs as cg  # noqa: E402
from support.tf_graphs import modelscope_tf_pipeline, op_histogram, run_frozen  # noqa: E402

TASK = "image-portrait-stylization"
V2_CONTROL_FLOW = {
    "If",
    "StatelessIf",
    "While",
    "StatelessWhile",
    "PartitionedCall",
    "StatefulPartitionedCall",
}


def _rgb(path):
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


def _modelscope_image(path):
    """The RGB image ModelScope's forward works on (utils.resize_size: short side at most 720)."""
    from modelscope.models.cv.cartoon.utils import resize_size

    return resize_size(_rgb(path), size=720)


def _detector_input(img):
    """FaceDetector.preprocess: scaled by 512 / long side, pasted top-left on the pixel means, batched."""
    from modelscope.models.cv.cartoon.facelib.face_detector import FaceDetector

    image, _, _ = FaceDetector.preprocess(None, img, target_height=512, target_width=512)
    return image[None].astype(np.float32)


def _node(graph_bytes, op):
    (name,) = [n.name for n in tf.compat.v1.GraphDef.FromString(graph_bytes).node if n.op == op]
    return name


@pytest.fixture(scope="module")
def scenario_dirs(tmp_path_factory, shared_dir):
    """{scenario: (model directory, photo path)}."""
    root = tmp_path_factory.mktemp("cartoon")
    return {name: cg.make_scenario_dir(root / name, name, shared_dir=shared_dir) for name in cg.SCENARIOS}


def test_cartoon_graphs_generators(shared_dir):
    bg, head = cg.cartoon_generator_graph(0), cg.cartoon_generator_graph(1)
    assert bg != head
    assert cg.cartoon_generator_graph(0) is bg  # cached
    for graph in (bg, head):
        ops = op_histogram(graph)
        # unet_generator's convs, LeakyReLUs and bilinear upsamplings; guided_filter's depthwise box filters
        assert ops["Conv2D"] == 18 and ops["LeakyRelu"] == 13 and ops["ResizeBilinear"] == 2
        assert ops["DepthwiseConv2dNative"] >= 6 and ops["Cast"] == 1 and ops["Placeholder"] == 1
    nodes = {n.name: n for n in tf.compat.v1.GraphDef.FromString(bg).node}
    assert nodes["input_image"].attr["dtype"].type == tf.float32.as_datatype_enum
    assert [d.size for d in nodes["input_image"].attr["shape"].shape.dim] == [-1, -1, 3]
    assert nodes["output_image"].attr["DstT"].type == tf.uint8.as_datatype_enum
    for name in ("faces/ulfd_5.jpg", "faces/office3.jpg", "skimage/coffee.png"):
        img = cv2.imread(cg.photo_path(name, shared_dir))
        h, w = img.shape[:2]
        img = img[: h // 16 * 16, : w // 16 * 16]
        outs = [run_frozen(g, {"input_image:0": img}, ["output_image:0"])[0] for g in (bg, head)]
        for out in outs:
            assert out.shape == img.shape and out.dtype == np.uint8
            assert out.astype(np.float64).std() > 20, name
            assert np.mean((out == 0) | (out == 255)) < 0.05, name
            assert min(out.reshape(-1, 3).std(0)) > 15, name  # every channel varies
        assert np.abs(outs[0].astype(int) - outs[1]).mean() > 10


def test_cartoon_graphs_detector_structure():
    prior = [(0.3, 0.2, 0.5, 0.45)]
    graph = cg.face_detector_graph(prior, seed=3)
    assert cg.face_detector_graph(prior, seed=3) is graph
    ops = op_histogram(graph)
    # BatchNorm under v1 conds; map_fn as a TF1 while loop over TensorArrays; NMS inside it
    for op in ("Switch", "Merge", "FusedBatchNormV3", "Enter", "Exit", "NextIteration", "LoopCond"):
        assert ops.get(op, 0) >= 1, op
    for op in ("TensorArrayV3", "TensorArrayScatterV3", "TensorArrayReadV3", "TensorArrayWriteV3"):
        assert ops.get(op, 0) >= 1, op
    assert ops.get("NonMaxSuppressionV3", 0) + ops.get("NonMaxSuppressionV2", 0) == 1
    for op in ("Where", "Squeeze", "GatherV2", "Pad", "Softmax", "Tanh", "Conv2D"):
        assert ops.get(op, 0) >= 1, op
    assert not V2_CONTROL_FLOW & set(ops)
    nodes = {n.name: n for n in tf.compat.v1.GraphDef.FromString(graph).node}
    assert [d.size for d in nodes["tower_0/images"].attr["shape"].shape.dim] == [-1, -1, -1, 3]
    assert nodes["training_flag"].attr["dtype"].type == tf.bool.as_datatype_enum
    for name in ("tower_0/boxes", "tower_0/scores", "tower_0/num_detections"):
        assert nodes[name].op == "Identity"
    assert cg.face_detector_graph(prior, seed=4) != graph
    assert cg.face_detector_graph([(0.5, 0.2, 0.7, 0.45)], seed=3) != graph


@pytest.mark.parametrize("name", list(cg.SCENARIOS))
def test_cartoon_graphs_detector_scores(name, scenario_dirs):
    """On the real photo, every anchor's score lies in its kind's band (so never within 0.07 of 0.3 or 0.8), the
    graph's NMS keeps one box per face (about the face's box) and some middle-band boxes ModelScope then drops."""
    scenario = cg.SCENARIOS[name]
    model_dir, photo = scenario_dirs[name]
    graph = open(f"{model_dir}/detector.pb", "rb").read()
    faces = cg.face_prior_for(photo, scenario["faces"])
    decoys = cg.face_prior_for(photo, scenario["decoys"])
    _, _, kinds = cg.detector_prior(faces, decoys)
    image = _detector_input(_modelscope_image(photo))
    softmax = _node(graph, "Softmax") + ":0"
    fetches = [softmax, "tower_0/boxes:0", "tower_0/scores:0", "tower_0/num_detections:0"]
    probs, boxes, scores, num = run_frozen(
        graph, {"tower_0/images:0": image, "training_flag:0": False}, fetches
    )
    anchor_scores = probs[0, :, 1]
    for kind, band in zip((0, 1, 2), ("background", "match", "near")):
        lo, hi = cg.SCORE_BANDS[band]
        s = anchor_scores[kinds == kind]
        assert ((s >= lo) & (s <= hi)).all(), (band, s.min(), s.max())
    assert (kinds == 1).sum() >= 2 * len(faces)  # several anchors per face: NMS has work to do
    assert boxes.shape == (1, 100, 4) and scores.shape == (1, 100) and num.dtype == np.int32
    n = int(num[0])
    kept, kept_scores = boxes[0, :n], scores[0, :n]
    assert (scores[0, n:] == 0).all() and (kept_scores >= cg.DETECTOR_SCORE_THRESHOLD).all()
    assert n < (anchor_scores >= cg.DETECTOR_SCORE_THRESHOLD).sum() or n == 0
    high = kept[kept_scores > cg.MODELSCOPE_SCORE_THRESHOLD]
    assert len(high) == len(faces)
    for x1, y1, x2, y2 in faces:  # each face: one kept box, close to it
        face = np.array([y1, x1, y2, x2])
        assert (cg._iou(high.astype(np.float64), face) > 0.8).sum() == 1
    middle = (kept_scores > 0.3) & (kept_scores < 0.8)
    if faces or decoys:
        assert middle.sum() >= 1
    # the BatchNorm conds are live: batch statistics give other scores
    (trained,) = run_frozen(graph, {"tower_0/images:0": image, "training_flag:0": True}, [softmax])
    assert np.abs(trained - probs).max() > 1e-3


def test_cartoon_graphs_empty_prior_finds_nothing(shared_dir):
    graph = cg.face_detector_graph((), seed=0)
    image = _detector_input(_modelscope_image(cg.photo_path("faces/ulfd_13.jpg", shared_dir)))
    (num,) = run_frozen(
        graph, {"tower_0/images:0": image, "training_flag:0": False}, ["tower_0/num_detections:0"]
    )
    assert num.tolist() == [0]


def test_cartoon_graphs_too_small_face_is_refused():
    with pytest.raises(ValueError, match="anchors with IoU"):
        cg.detector_prior([(0.5, 0.5, 0.51, 0.512)])


def test_cartoon_graphs_landmarks(shared_dir):
    graph = cg.face_landmark_graph(0)
    ops = op_histogram(graph)
    for op in ("Switch", "Merge", "FusedBatchNormV3", "Conv2D", "Mean", "MatMul", "Tanh"):
        assert ops.get(op, 0) >= 1, op
    assert not V2_CONTROL_FLOW & set(ops)
    img = _rgb(cg.photo_path("faces/ulfd_13.jpg", shared_dir))
    crops = np.stack(
        [cv2.resize(img[0:120, 80:200], (160, 160)), cv2.resize(img[60:180, 280:400], (160, 160))]
    )
    feeds = {"tower_0/images:0": crops.astype(np.float32), "training_flag:0": False}
    (pred,) = run_frozen(graph, feeds, ["tower_0/prediction:0"])
    assert pred.shape == (2, 143)
    points = pred[:, :136].reshape(2, 68, 2)
    assert np.abs(points - cg.LANDMARK_TEMPLATE).max() <= cg.LANDMARK_OFFSET + 1e-6
    assert np.abs(points[0] - points[1]).max() > 1e-3  # image-dependent
    (trained,) = run_frozen(graph, {**feeds, "training_flag:0": True}, ["tower_0/prediction:0"])
    assert np.abs(trained - pred).max() > 1e-3
    # the eyes (36-41, 42-47) are closed hexagons with area; the template is a face, left to right
    for eye in (cg.LANDMARK_TEMPLATE[36:42], cg.LANDMARK_TEMPLATE[42:48]):
        assert cv2.contourArea(eye * 160) > 40
    t = cg.LANDMARK_TEMPLATE
    assert t[36, 0] < t[39, 0] < t[30, 0] < t[42, 0] < t[45, 0] and t[27, 1] < t[30, 1] < t[51, 1] < t[8, 1]


def test_cartoon_graphs_directory(tmp_path):
    path = cg.make_cartoon_dir(tmp_path / "m", [(0.3, 0.2, 0.5, 0.45)], seed=1)
    config = json.loads((tmp_path / "m" / "configuration.json").read_text())
    assert config["framework"] == "tensorflow" and config["task"] == TASK
    assert config["pipeline"] == {"type": "unet-person-image-cartoon"} and "model" not in config
    assert (tmp_path / "m" / "cartoon_bg.pb").read_bytes() == cg.cartoon_generator_graph(2)
    assert (tmp_path / "m" / "cartoon_h.pb").read_bytes() == cg.cartoon_generator_graph(3)
    alpha = cv2.imread(f"{path}/alpha.jpg")
    assert alpha.shape == (256, 256, 3)
    gray = alpha[:, :, 0].astype(int)
    assert gray[128, 128] > 250 and gray[2, 2] < 5 and ((gray > 20) & (gray < 235)).mean() > 0.05


def test_cartoon_graphs_face_prior_for(shared_dir):
    path = cg.photo_path("faces/ulfd_5.jpg", shared_dir)  # 1024x769 -> 958x720 in ModelScope
    assert cg.modelscope_size(769, 1024) == (720, 958)
    (prior,) = cg.face_prior_for(path, [(0, 0, 1024, 769)])
    np.testing.assert_allclose(prior, (0, 0, 1.0, 720 / 958))
    assert cg.face_prior_for(_rgb(path), [(10, 20, 30, 40)]) == cg.face_prior_for(path, [(10, 20, 30, 40)])
    (small,) = cg.face_prior_for(np.zeros((300, 400, 3)), [(40, 30, 80, 90)])  # no resize: / 400
    np.testing.assert_allclose(small, (0.1, 0.075, 0.2, 0.225))


@pytest.mark.parametrize("name", list(cg.SCENARIOS))
def test_cartoon_graphs_modelscope_pipeline(name, scenario_dirs, monkeypatch):
    """ModelScope's pipeline: its detector keeps the faces above 0.8, its landmark step the ones above 60 px, its
    find_pupil really thresholds the eyes, and the output is the photo's size."""
    from modelscope.models.cv.cartoon import utils

    scenario = cg.SCENARIOS[name]
    model_dir, photo = scenario_dirs[name]
    pipe = modelscope_tf_pipeline(TASK, model_dir)
    assert pipe.facer.face_detector.thres == cg.MODELSCOPE_SCORE_THRESHOLD
    assert pipe.facer.face_landmark.min_face == cg.MODELSCOPE_MIN_FACE
    img = _modelscope_image(photo)
    detected = pipe.facer.face_detector(img)  # [n, 5]: x1, y1, x2, y2 in img's pixels, score > 0.8
    assert len(detected) == len(scenario["faces"])
    sizes = np.maximum(detected[:, 2] - detected[:, 0], detected[:, 3] - detected[:, 1])
    assert ((sizes > cg.MODELSCOPE_MIN_FACE).sum()) == scenario["found"]
    boxes, landmarks, _ = pipe.facer.run(img)
    assert len(boxes) == len(landmarks) == scenario["found"]
    if scenario["found"]:
        assert landmarks.shape == (scenario["found"], 68, 2)

    pupils = []
    find_pupil = utils.find_pupil

    def recording(marks, np_img):
        pupil = find_pupil(marks, np_img)
        pupils.append((marks, np_img, pupil))
        return pupil

    monkeypatch.setattr(utils, "find_pupil", recording)
    out = pipe(photo)["output_img"]
    h, w = _rgb(photo).shape[:2]
    assert out.shape == (h, w, 3)
    # ModelScope's blend (float32 mask times the uint8 head) turns the output float32; without a face it is the
    # background generator's uint8 output
    assert out.dtype == (np.float32 if scenario["found"] else np.uint8)
    assert out.std() > 20 and out.min() >= 0 and out.max() <= 255
    assert len(pupils) == 2 * scenario["found"]
    for marks, np_img, pupil in pupils:
        assert pupil is not None  # no fallback to the landmarks' mean
        xmin, ymin = marks.min(0).astype(int)
        xmax, ymax = marks.max(0).astype(int)
        assert xmax - xmin >= 4 and ymax - ymin >= 2
        # the eye mask holds pixels Otsu finds dark: find_pupil takes their median, not the region's centre
        eye = cv2.equalizeHist(
            cv2.cvtColor(np.ascontiguousarray(np_img[ymin:ymax, xmin:xmax]), cv2.COLOR_BGR2GRAY)
        )
        mask = cv2.fillConvexPoly(np.zeros_like(eye), (marks - [xmin, ymin]).astype(np.int32), 1)
        _, thresh = cv2.threshold(eye, 100, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        assert ((thresh == 0) & (mask == 1)).sum() > 0


def test_cartoon_graphs_modelscope_no_face_keeps_resized_size(tmp_path, shared_dir):
    """A ModelScope quirk the directories expose: without a face, forward returns the background result at the
    720-short-side working size (it returns before resizing back to the photo's size)."""
    photo = cg.photo_path("faces/ulfd_5.jpg", shared_dir)  # 1024x769
    pipe = modelscope_tf_pipeline(TASK, cg.make_cartoon_dir(tmp_path / "m"))
    out = pipe(photo)["output_img"]
    assert out.shape == (720, 958, 3) and out.dtype == np.uint8
