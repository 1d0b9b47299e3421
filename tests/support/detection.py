"""The detection comparator of the model tests: msvision's detection dicts against ModelScope's."""

from __future__ import annotations

import numpy as np


def check_detection_format(result, keypoints=None):
    """ModelScope's face-detection dict: lists of Python floats; ``keypoints`` None or 10 floats per face."""
    assert set(result) == {"scores", "boxes", "keypoints"}
    assert isinstance(result["scores"], list) and isinstance(result["boxes"], list)
    assert len(result["scores"]) == len(result["boxes"])
    assert all(type(s) is float for s in result["scores"])
    assert all(
        isinstance(b, list) and len(b) == 4 and all(type(v) is float for v in b) for b in result["boxes"]
    )
    if keypoints is None:
        assert result["keypoints"] is None
    else:
        assert isinstance(result["keypoints"], list) and len(result["keypoints"]) == len(result["boxes"])
        assert all(
            isinstance(k, list) and len(k) == keypoints and all(type(v) is float for v in k)
            for k in result["keypoints"]
        )


def _pair_iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def assert_same_detections(a, b, what, keypoints=None, box_atol=1.0, score_atol=1e-3):
    """a: msvision, b: ModelScope. Same number of detections; each of ModelScope's matched (best IoU, one to one)
    by one of ours with the box within ``box_atol`` px and the score within ``score_atol``; the order (by score)
    agrees too; keypoints (if any) within ``box_atol`` px."""
    check_detection_format(a, keypoints)
    assert len(a["scores"]) == len(b["scores"]), (
        f"{what}: {len(a['scores'])} detections, ModelScope {len(b['scores'])}"
    )
    free = list(range(len(a["boxes"])))
    for i, (box, score) in enumerate(zip(b["boxes"], b["scores"])):
        j = max(free, key=lambda k: _pair_iou(a["boxes"][k], box))
        free.remove(j)
        assert np.abs(np.subtract(a["boxes"][j], box)).max() <= box_atol, (what, i, a["boxes"][j], box)
        assert abs(a["scores"][j] - score) <= score_atol, (what, i, a["scores"][j], score)
    if a["boxes"]:
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=box_atol, err_msg=what)  # same order as well
        if keypoints:
            np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=box_atol, err_msg=what)


def _arrays(result):
    scores = np.asarray(result["scores"], dtype=np.float64)
    boxes = np.asarray(result["boxes"], dtype=np.float64).reshape(-1, 4)
    return scores, boxes


def _iou(box, boxes):
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def assert_same_detections_up_to_ties(a, b, threshold, scale=1.0, what=""):
    """Same boxes and scores up to float rounding between the engines.

    Boxes are paired by coordinates, not by position (near-equal scores may come out in either order). A box
    that only one side has must be explained by rounding: its score is within 1e-4 of the threshold, or
    another anchor's box (overlapping it, IoU > 0.3, but at least 2 px away) with a score within 1e-4 of its own
    is on the other side instead (greedy NMS over near-tied neighbours, e.g. anchors in a flat image region,
    resolves the tie the other way)."""
    sa, ba = _arrays(a)
    sb, bb = _arrays(b)
    box_tol = 2e-3 * max(1.0, 1.0 / scale) + 1e-4 * np.abs(bb).max(initial=1.0)
    score_tol = 2e-5 / scale
    used = np.zeros(len(sa), bool)
    only_b = []
    for i in range(len(sb)):
        d = np.abs(ba - bb[i]).max(axis=1) if len(ba) else np.zeros(0)
        cand = [
            j for j in np.argsort(d) if not used[j] and d[j] <= box_tol and abs(sa[j] - sb[i]) <= score_tol
        ]
        if cand:
            used[cand[0]] = True
        else:
            only_b.append(i)
    only_a = np.nonzero(~used)[0]
    tie = 1e-4 / scale
    for side, idx, s, bx, s_other, bx_other in (
        ("ModelScope", only_b, sb, bb, sa, ba),
        ("msvision", only_a, sa, ba, sb, bb),
    ):
        for i in idx:
            near_threshold = abs(s[i] * scale - threshold) < 1e-4
            apart = np.abs(bx_other - bx[i]).max(axis=1) >= 2.0
            rival = len(bx_other) and np.any(
                (np.abs(s_other - s[i]) <= tie) & (_iou(bx[i], bx_other) > 0.3) & apart
            )
            assert near_threshold or rival, (
                f"{what}: a box only {side} found (score {s[i]:.6f}, box {np.round(bx[i], 2).tolist()}); "
                f"counts msvision {len(sa)} vs ModelScope {len(sb)}"
            )


def assert_same_object_detections(a, b, what, box_atol=1.0, score_atol=1e-3, tie=1e-3, cap=None, iou=None):
    """DAMO-YOLO's result dicts (a: msvision, b: ModelScope): ``scores`` float32 (N,), ``labels`` list of str,
    ``boxes`` float32 (N, 4) — or (0, 5) when empty, as ModelScope returns it. The same detections one to one
    (same label, box within ``box_atol`` px, score within ``score_atol``) in the same order, except that two
    detections whose scores differ by at most ``tie`` may come out swapped (the engines round differently).

    A detection only one side has must be explained by rounding, never by a different algorithm:
    - both sides hit ``cap`` detections and its score is within ``tie`` of the last one kept; or
    - (``iou`` given: the NMS threshold) the other side has a detection of its label whose IoU with it is within
      2e-3 of the threshold (greedy NMS decided that borderline overlap the other way), or a detection of its
      label that only the other side has and that overlaps it by more than the threshold - 2e-3 (the knock-on
      effect of such a decision)."""
    assert set(a) == {"scores", "labels", "boxes"}, what
    for r in (a, b):
        assert isinstance(r["scores"], np.ndarray) and r["scores"].dtype == np.float32, what
        assert isinstance(r["boxes"], np.ndarray) and r["boxes"].dtype == np.float32, what
        assert isinstance(r["labels"], list) and all(isinstance(x, str) for x in r["labels"]), what
        assert len(r["labels"]) == len(r["scores"]) == len(r["boxes"]), what
    if len(b["scores"]) == 0 or len(a["scores"]) == 0:
        assert a["boxes"].shape == b["boxes"].shape, (what, a["boxes"].shape, b["boxes"].shape)
        return
    assert a["boxes"].shape[1] == b["boxes"].shape[1] == 4, what
    free = set(range(len(a["scores"])))
    matched = {}  # ModelScope's index -> ours
    for i in range(len(b["scores"])):
        cands = [
            j
            for j in free
            if a["labels"][j] == b["labels"][i]
            and np.abs(a["boxes"][j] - b["boxes"][i]).max() <= box_atol
            and abs(float(a["scores"][j]) - float(b["scores"][i])) <= score_atol
        ]
        if cands:
            j = min(cands, key=lambda k: abs(k - i))
            free.remove(j)
            matched[i] = j
    only = {"ModelScope": [i for i in range(len(b["scores"])) if i not in matched], "msvision": sorted(free)}
    sides = {"ModelScope": (b, a, "msvision"), "msvision": (a, b, "ModelScope")}
    for side, idx in only.items():
        mine, other, other_name = sides[side]
        for i in idx:
            at_cut = (
                cap is not None
                and len(mine["scores"]) == cap
                and mine["scores"][i] - mine["scores"][-1] <= tie
            )
            explained = at_cut
            if not explained and iou is not None:
                same = np.array([lab == mine["labels"][i] for lab in other["labels"]])
                overlaps = _iou(mine["boxes"][i].astype(np.float64), other["boxes"].astype(np.float64))
                borderline = same & (np.abs(overlaps - iou) <= 2e-3)
                knock_on = np.zeros_like(same)
                knock_on[only[other_name]] = True
                knock_on &= same & (overlaps > iou - 2e-3)
                explained = bool(borderline.any() or knock_on.any())
            assert explained, (
                f"{what}: {side}'s detection {i} ({mine['labels'][i]}, {mine['scores'][i]:.6f}, "
                f"{np.round(mine['boxes'][i], 2).tolist()}) has no match"
            )
    order = sorted(matched)
    for x in range(len(order)):
        for y in range(x + 1, len(order)):
            i, k = order[x], order[y]
            if matched[i] > matched[k]:
                assert abs(float(b["scores"][i]) - float(b["scores"][k])) <= tie, (
                    f"{what}: detections {i} and {k} come out in another order"
                )
    assert len(matched) >= 0.9 * len(b["scores"]), (
        f"{what}: only {len(matched)} of {len(b['scores'])} matched"
    )
