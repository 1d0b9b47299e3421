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


# ---- input and output types ----


def test_pil_input_gives_pil_and_is_untouched():
    rgba = Image.fromarray(np.dstack([photo()[:, :, ::-1], np.full((H, W), 200, np.uint8)]), "RGBA")
    before = np.asarray(rgba).copy()
    drawn = draw(rgba, OBJECTS)
    assert isinstance(drawn, Image.Image) and drawn.mode == "RGB" and drawn.size == (W, H)
    np.testing.assert_array_equal(np.asarray(rgba), before)
    plain = np.asarray(rgba.convert("RGB"))[:, :, ::-1]
    check_boxes_only(plain, np.asarray(drawn)[:, :, ::-1], OBJECTS["boxes"])


def test_gray_array_gives_bgr():
    gray = photo()[:, :, 0].copy()
    before = gray.copy()
    drawn = draw(gray, FACES)
    np.testing.assert_array_equal(gray, before)
    assert drawn.shape == (H, W, 3) and drawn.dtype == np.uint8
    check_boxes_only(np.dstack([gray] * 3), drawn, FACES["boxes"])


def test_path_and_bytes_give_bgr_arrays(tmp_path):
    image = photo()
    path = tmp_path / "photo.png"
    Image.fromarray(image[:, :, ::-1]).save(path)
    expected = draw(image, OBJECTS)
    for source in (path, str(path), path.read_bytes()):
        drawn = draw(source, OBJECTS)
        assert isinstance(drawn, np.ndarray)
        np.testing.assert_array_equal(drawn, expected)
    assert draw(image, OBJECTS).flags.writeable


def test_drawing_is_deterministic_and_colours_follow_labels():
    image = np.full((H, W, 3), 50, np.uint8)
    result = {
        "scores": [0.9, 0.8, 0.7],
        "labels": ["cat", "cat", "car"],
        "boxes": [[5, 60, 50, 110], [60, 60, 100, 110], [110, 60, 155, 110]],
    }
    first, second = draw(image, result), draw(image, result)
    np.testing.assert_array_equal(first, second)
    bottom = 110  # a pixel on each box's bottom edge, clear of the label
    cat1, cat2, car = first[bottom, 25], first[bottom, 80], first[bottom, 130]
    np.testing.assert_array_equal(cat1, cat2)
    assert (cat1 != car).any() and (cat1 != 50).any()


def test_line_width_grows_with_the_image():
    def border_rows(size):
        image = np.zeros((size, size, 3), np.uint8)
        drawn = draw(image, {"scores": [0.5], "labels": ["x"], "boxes": [[0, 0, size - 1, size - 1]]})
        return int((drawn[:, size // 2] != 0).any(axis=1)[size // 2 :].sum())  # the bottom half: no label

    assert border_rows(100) == 1
    assert (
        1 < border_rows(600) < border_rows(1500)
    )  # 2 and 5 px lines (OpenCV's thick lines run a pixel over)


# ---- faces ----


def test_faces_without_landmarks_and_with_them():
    image = photo()
    plain = draw(image, {**FACES, "keypoints": None}, task="face-detection")
    check_boxes_only(image, plain, FACES["boxes"])
    marked = draw(image, FACES)
    nose = (45, 30)  # the first face's nose landmark (x 30, y 45): only drawn when landmarks are given
    assert (marked[nose] != plain[nose]).any()


def test_landmarks_outside_their_box_are_cut_at_it():
    image = np.zeros((H, W, 3), np.uint8)
    result = {
        "scores": [0.9],
        "boxes": [[40, 40, 80, 80]],
        "keypoints": [[39, 60, 150, 10, 60, 60, 60, 60, 60, 60]],
    }
    drawn = draw(image, result)
    check_boxes_only(image, drawn, result["boxes"])
    assert (drawn[60, 40] != 0).any()  # the part of the circle around (39, 60) inside the box


def test_boxes_clipped_skipped_and_degenerate():
    image = photo()
    result = {
        "scores": [0.9, 0.8, 0.7, 0.6, 0.5],
        "boxes": [
            [-30, -20, 40, 30],  # partly outside: clipped
            [float("nan"), 10, 50, 50],  # not finite: skipped
            [10, 10, float("inf"), 50],
            [500, 500, 600, 600],  # entirely outside: skipped
            [120, 100, 100, 80],  # corners swapped
        ],
        "keypoints": None,
    }
    drawn = draw(image, result)
    check_boxes_only(image, drawn, [[-30, -20, 40, 30], [100, 80, 120, 100]])


def test_far_away_keypoints_do_not_break_drawing():
    image = photo()
    body = {
        "boxes": [[20.0, 10.0, 100.0, 115.0]],
        "keypoints": [[[1e12, -1e12]] + [[60, 60]] * 13 + [[float("nan"), 3]]],
        "scores": [[0.9] * 15],
    }
    check_boxes_only(image, draw(image, body), body["boxes"])


# ---- objects ----


def test_damo_yolo_boxes_beyond_the_image_are_clipped():
    image = photo()
    result = {
        "scores": np.array([0.8], np.float32),
        "labels": ["car"],
        "boxes": np.array([[140.0, 100.0, 191.5, 127.9]], np.float32),  # padded-image pixels, past the border
    }
    drawn = draw(image, result, task="domain-specific-object-detection")
    check_boxes_only(image, drawn, result["boxes"])


# ---- body keypoints ----


def test_joints_below_the_threshold_are_not_drawn():
    from msvision.drawing import KEYPOINT_THRESHOLD

    image = np.zeros((H, W, 3), np.uint8)
    low = {**BODY, "scores": [[KEYPOINT_THRESHOLD / 2] * 15]}
    drawn = draw(image, low)
    interior = drawn[14:111, 24:96]  # inside the box, clear of its border
    assert not interior.any()
    assert draw(image, BODY)[14:111, 24:96].any()


def test_body_variants():
    image = photo()
    coco = {
        "boxes": [[[20.0, 10.0], [100.0, 115.0]]],  # corners as pairs
        "keypoints": np.array([[[30 + 4 * i, 15 + 5 * i] for i in range(17)]], np.float32),
        "scores": np.full((1, 17), 0.7, np.float32),
    }
    check_boxes_only(image, draw(image, coco, task="body-2d-keypoints"), [[20, 10, 100, 115]])
    two = {k: v * 2 for k, v in BODY.items()}
    two["boxes"] = [[20.0, 10.0, 100.0, 115.0], [110.0, 5.0, 150.0, 60.0]]
    check_boxes_only(image, draw(image, two), two["boxes"])


# ---- restoration and matting ----


def test_restoration_in_the_callers_type():
    image, out = photo(), photo()[:, ::-1].copy()
    result = {"output_img": out}
    drawn = draw(image, result)  # told from the 3-channel output
    assert drawn is not out
    np.testing.assert_array_equal(drawn, out)
    pil = draw(Image.fromarray(image[:, :, ::-1]), result, task="image-deblurring")
    assert isinstance(pil, Image.Image) and pil.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(pil), out[:, :, ::-1])


def test_matting_alpha_extremes_and_blend():
    image = photo()
    colour = photo()[::-1].copy()
    alpha = np.tile(np.arange(W, dtype=np.uint8) * 1, (H, 1))
    alpha[:, 0], alpha[:, -1] = 0, 255
    bgra = np.dstack([colour, alpha])
    before = bgra.copy()
    drawn = draw(Image.fromarray(image[:, :, ::-1]), {"output_img": bgra}, task="universal-matting")
    np.testing.assert_array_equal(bgra, before)
    assert isinstance(drawn, Image.Image) and drawn.size == (W, H)
    drawn = np.asarray(drawn)[:, :, ::-1]
    board = checkerboard(H, W)
    np.testing.assert_array_equal(drawn[:, 0], np.dstack([board] * 3)[:, 0])
    np.testing.assert_array_equal(drawn[:, -1], colour[:, -1])
    a = alpha[:, :, None] / 255.0
    expected = colour * a + board[:, :, None] * (1 - a)
    assert np.abs(drawn - expected).max() <= 0.5 + 1e-9
    assert board[0, 0] == CHECKER_LIGHT and board[0, 16] == CHECKER_DARK and board[16, 16] == CHECKER_LIGHT


# ---- bad results ----


@pytest.mark.parametrize(
    "result, task, error, match",
    [
        (FACES, "image-object-detection", ValueError, "labels"),
        ({"output_img": np.zeros((H, W, 3), np.uint8)}, "portrait-matting", ValueError, "HxWx4"),
        ({"output_img": np.zeros((H, W, 4), np.uint8)}, "image-denoising", ValueError, "HxWx3"),
        ({"output_img": np.zeros((H, W, 3), np.float32)}, "image-denoising", TypeError, "uint8"),
        ({"output_img": np.zeros((H, W, 3), np.int16)}, None, ValueError, "stylization"),
        ({"output_img": [[1]]}, None, TypeError, "numpy"),
        ({"output_img": np.zeros((H, W, 4), np.uint8)[:60]}, None, ValueError, "not this image"),
        ({**OBJECTS, "labels": ["person"]}, None, ValueError, "labels"),
        ({**FACES, "scores": [0.5]}, None, ValueError, "scores"),
        ({**FACES, "boxes": [[1, 2, 3], [4, 5, 6]]}, None, ValueError, "N x 4"),
        ({**FACES, "boxes": [[1, 2, 3, 4], [5, 6]]}, None, TypeError, "boxes"),
        ({**FACES, "keypoints": [[1, 2, 3]] * 2}, "face-detection", ValueError, "keypoints"),
        ({**BODY, "scores": [[0.5] * 14]}, None, ValueError, "scores"),
        ({"boxes": [], "keypoints": [[[1, 2]] * 15], "scores": [[0.5] * 15]}, None, ValueError, "empty"),
        (OBJECTS, 7, TypeError, "task"),
    ],
)
def test_mismatched_results_are_refused(result, task, error, match):
    with pytest.raises(error, match=match):
        draw(photo(), result, task=task)


# ---- end to end ----


def test_mtcnn_faces_with_landmarks_end_to_end(shared_dir):
    path = shared_dir / "assets/images/faces/office1.jpg"
    pipe = msvision.pipeline(
        "face-detection", model=str(shared_dir / "assets/modelscope/damo/cv_manual_face-detection_mtcnn")
    )
    photo_in = Image.open(path)
    result = pipe(photo_in)
    assert len(result["boxes"]) > 3 and np.shape(result["keypoints"]) == (len(result["boxes"]), 10)
    drawn = msvision.draw(photo_in, result, task="face-detection")
    assert isinstance(drawn, Image.Image)
    image = np.asarray(photo_in.convert("RGB"))
    check_boxes_only(image, np.asarray(drawn), np.asarray(result["boxes"]))
