"""msvision.draw on every task's result: type, shape and dtype, the input untouched, pixels changed only inside
the boxes (and inside each), matting composited over the checkerboard, restoration returning its output."""

import numpy as np
import pytest
from PIL import Image

import msvision
from msvision.drawing import CHECKER_DARK, CHECKER_LIGHT, checkerboard, draw

H, W = 120, 160


def photo():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def inside(boxes, h=H, w=W):
    mask = np.zeros((h, w), bool)
    for x1, y1, x2, y2 in boxes:
        mask[
            max(0, int(np.floor(y1))) : int(np.ceil(y2)) + 1, max(0, int(np.floor(x1))) : int(np.ceil(x2)) + 1
        ] = True
    return mask


def check_boxes_only(image, drawn, boxes):
    assert drawn.dtype == np.uint8 and drawn.shape == image.shape
    changed = (drawn != image).any(axis=2)
    assert not changed[~inside(boxes, *image.shape[:2])].any(), "pixels changed outside the boxes"
    for box in boxes:
        assert changed[inside([box], *image.shape[:2])].any(), f"nothing drawn in {box}"


FACES = {
    "scores": [0.99, 0.8],
    "boxes": [[10.5, 12.2, 60.0, 70.9], [90, 20, 150, 100]],
    "keypoints": [[20, 30, 40, 30, 30, 45, 22, 55, 38, 55], [100, 40, 130, 40, 115, 60, 105, 80, 125, 80]],
}
OBJECTS = {
    "scores": np.array([0.9, 0.6], np.float32),
    "labels": ["person", "dog"],
    "boxes": np.array([[5, 5, 70, 110], [80, 60, 170, 130]], np.float32),  # the second crosses the border
}
BODY = {
    "boxes": [[20.0, 10.0, 100.0, 115.0]],
    "keypoints": [[[40 + 3 * i, 15 + 6 * i] for i in range(15)]],
    "scores": [[np.float32(0.9)] * 15],
}


@pytest.mark.parametrize(
    "result, task",
    [(FACES, "face-detection"), (OBJECTS, "image-object-detection"), (BODY, "body-2d-keypoints")],
)
@pytest.mark.parametrize("given_task", [False, True])
def test_detections_are_drawn_inside_their_boxes(result, task, given_task):
    image = photo()
    before = image.copy()
    drawn = draw(image, result, task=task if given_task else None)
    np.testing.assert_array_equal(image, before)
    assert isinstance(drawn, np.ndarray)
    check_boxes_only(image, drawn, np.asarray(result["boxes"], np.float64))
    pil = draw(Image.fromarray(image[:, :, ::-1]), result)
    assert isinstance(pil, Image.Image) and pil.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(pil)[:, :, ::-1], drawn)


@pytest.mark.parametrize(
    "empty",
    [
        {"scores": [], "boxes": [], "keypoints": None},
        {"scores": np.zeros(0, np.float32), "labels": [], "boxes": np.zeros((0, 5), np.float32)},
        {"boxes": [], "keypoints": [], "scores": []},
    ],
)
def test_empty_results_give_an_unchanged_copy(empty):
    image = photo()
    drawn = draw(image, empty)
    assert drawn is not image
    np.testing.assert_array_equal(drawn, image)


def test_restoration_returns_its_output():
    image, out = photo(), photo()[::-1].copy()
    np.testing.assert_array_equal(draw(image, {"output_img": out}, task="image-denoising"), out)


def test_matting_composites_over_a_checkerboard():
    image = photo()
    bgra = np.dstack([image, np.zeros((H, W), np.uint8)])
    bgra[:40, :, 3] = 255
    bgra[80:, :, 3] = 128
    drawn = draw(image, {"output_img": bgra})
    board = checkerboard(H, W)
    board = board if board.ndim == 3 else np.dstack([board] * 3)
    np.testing.assert_array_equal(drawn[:40], image[:40])
    np.testing.assert_array_equal(drawn[40:80], board[40:80])
    assert set(np.unique(board)) == {CHECKER_LIGHT, CHECKER_DARK}
    blend = image[80:].astype(np.float64) * 128 / 255 + board[80:].astype(np.float64) * 127 / 255
    assert np.abs(drawn[80:] - blend).max() <= 1


def test_bad_results_are_named():
    with pytest.raises(TypeError, match="dict"):
        draw(photo(), [1, 2])
    with pytest.raises(ValueError):
        draw(photo(), {"something": 1})
    with pytest.raises(ValueError, match="task"):
        draw(photo(), FACES, task="no-such-task")
    with pytest.raises(ValueError):
        draw(photo(), {"output_img": np.zeros((10, 10, 3), np.uint8)})  # another size


def test_real_faces_end_to_end(shared_dir):
    path = shared_dir / "assets/images/faces/office1.jpg"
    pipe = msvision.pipeline(
        "face-detection", model=str(shared_dir / "assets/modelscope/damo/cv_manual_face-detection_ulfd")
    )
    result = pipe(str(path))
    assert len(result["boxes"]) > 3
    drawn = msvision.draw(str(path), result)
    image = np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1]
    check_boxes_only(image, drawn, np.asarray(result["boxes"]))
    assert msvision.draw(path.read_bytes(), result).shape == image.shape
