"""A TF1 ``tf.map_fn`` non-max-suppression loop, cut at its inputs and run as one C NMS per batch item.

Detectors of the TF1 era (the DSFD / FaceBoxes family, e.g. the face analyser of ModelScope's DCT-Net cartoon
models) end in ``batch_non_max_suppression``: a ``map_fn`` over the batch whose body keeps the boxes scoring at
least a threshold (``Where(GreaterEqual(scores, t))`` + ``GatherV2``), runs ``NonMaxSuppressionV2/V3`` on them,
gathers the kept boxes and scores and zero-pads them to ``max_output_size``; the loop's TensorArrays stack the
results into ``[B, max, 4]`` boxes, ``[B, max]`` scores and ``[B]`` counts. The importer has no while loops: this
module recognises that pattern from the requested outputs back to the loop's inputs (the ``TensorArrayScatterV3``
values: the decoded boxes ``[B, N, 4]`` and scores ``[B, N]`` computed by the network), reads the thresholds from
the graph's constants, and the importer computes those inputs on the core. ``apply`` then does what the loop did
with TensorFlow's semantics: candidates in index order, NMS by decreasing score with ties to the lower index, TF's
IoU (``_C.nms(mode='tf')``), boxes, scores and counts padded with zeros.

Anything else in a loop (another body, soft-NMS, labels of unknown meaning) is refused at load time, naming the
node, rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InvalidModelError
from . import host

NMS_OPS = frozenset(
    {"NonMaxSuppression", "NonMaxSuppressionV2", "NonMaxSuppressionV3", "NonMaxSuppressionV4"}
)
PASS_OPS = frozenset({"Identity", "StopGradient", "Snapshot", "Enter"})
FILTER_OPS = {"GreaterEqual": np.greater_equal, "Greater": np.greater}
# the ops of such a loop that only the matcher reads (msvision inspect does not count them as unsupported)
LOOP_OPS = frozenset(
    {
        "Enter",
        "Exit",
        "LoopCond",
        "NextIteration",
        "Where",
        "GatherV2",
        "TensorArrayV3",
        "TensorArrayGatherV3",
    }
    | {"TensorArrayReadV3", "TensorArrayScatterV3", "TensorArrayWriteV3"}
    | NMS_OPS
)
MAX_BOXES = 1 << 20


def _ref(text):
    if text.startswith("^"):
        return None
    name, _, index = text.partition(":")
    return name, int(index) if index else 0


@dataclass
class MapNms:
    """The loop's inputs (refs outside it), what each requested output is and the thresholds."""

    boxes_ref: tuple
    scores_ref: tuple
    kinds: dict  # requested output position -> "boxes" | "scores" | "count"
    candidate_test: object  # np.greater_equal or np.greater against candidate_threshold
    candidate_threshold: float
    max_output_size: int
    iou_threshold: float
    score_threshold: float  # NonMaxSuppressionV3's own (candidates must score above it); -inf for V2

    def apply(self, boxes: np.ndarray, scores: np.ndarray) -> dict:
        """{"boxes": [B, max, 4], "scores": [B, max], "count": [B] int32} from the loop's inputs."""
        from ... import _C

        if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.shape != boxes.shape[:2]:
            raise InvalidModelError(
                f"the NMS loop's inputs have shapes {boxes.shape} and {scores.shape}, not [B, N, 4] and [B, N]"
            )
        b, m = boxes.shape[0], self.max_output_size
        out_boxes = np.zeros((b, m, 4), np.float32)
        out_scores = np.zeros((b, m), np.float32)
        counts = np.zeros(b, np.int32)
        for i in range(b):
            s = scores[i].astype(np.float32)
            candidates = np.flatnonzero(
                self.candidate_test(s, np.float32(self.candidate_threshold))
                & (s > np.float32(self.score_threshold))
            )
            box_c = np.ascontiguousarray(boxes[i, candidates], np.float32)
            keep = _C.nms(
                box_c, np.ascontiguousarray(s[candidates]), self.iou_threshold, mode="tf", max_keep=m
            )
            kept = candidates[keep]
            counts[i] = kept.size
            out_boxes[i, : kept.size] = boxes[i, kept]
            out_scores[i, : kept.size] = s[kept]
        return {"boxes": out_boxes, "scores": out_scores, "count": counts}


class _Matcher:
    def __init__(self, defs, source):
        self.defs = defs
        self.source = source

    def fail(self, node, why):
        return InvalidModelError(f"{self.source}: the while loop through {node!r} is not a map_fn NMS: {why}")

    def node(self, name, user):
        d = self.defs.get(name)
        if d is None:
            raise InvalidModelError(
                f"{self.source}: node {user!r} takes input {name!r}, which does not exist"
            )
        return d

    def data_inputs(self, d, count=None):
        """``d``'s data inputs; exactly ``count`` of them, or the loop is refused naming the node."""
        ins = [r for r in (_ref(t) for t in d.inputs) if r is not None]
        if count is not None and len(ins) != count:
            raise self.fail(d.name, f"{d.op} has {len(ins)} inputs, not {count}")
        return ins

    def through(self, ref, user, ops=PASS_OPS):
        """``ref`` with pass-through ops (Identity, Enter) followed."""
        for _ in range(len(self.defs) + 1):
            d = self.node(ref[0], user)
            if d.op not in ops:
                return ref, d
            ins = self.data_inputs(d)
            if not ins:
                raise self.fail(d.name, f"{d.op} has no input")
            ref = ins[0]
        raise self.fail(user, "a cycle of pass-through nodes")

    def const(self, ref, user):
        """The value of a constant input (a Const, possibly through Enter/Identity), else an error."""
        _, d = self.through(ref, user)
        if d.op != "Const":
            raise self.fail(user, f"its input {d.name!r} is a {d.op}, not a constant")
        return host.evaluate(d, [])[0]

    def scalar(self, ref, user, what):
        v = self.const(ref, user)
        if v.size != 1:
            raise self.fail(user, f"its {what} has shape {v.shape}, not a scalar")
        return v.reshape(-1)[0]

    def loop_input(self, read_ref, user):
        """The tensor outside the loop that a TensorArrayReadV3 in the body reads row by row (its scatter)."""
        _, read = self.through(read_ref, user)
        if read.op != "TensorArrayReadV3":
            raise self.fail(
                user, f"{read.name!r} is a {read.op}, not a TensorArray read of the loop's inputs"
            )
        _, scatter = self.through(self.data_inputs(read, 3)[2], read.name)
        if scatter.op != "TensorArrayScatterV3":
            raise self.fail(read.name, f"the array it reads is filled by a {scatter.op}, not a scatter")
        return self.data_inputs(scatter, 4)[2], scatter.name

    def written_value(self, out_ref):
        """The in-loop tensor whose per-iteration values a requested output stacks, and the loop's name."""
        _, gather = self.through(out_ref, "outputs")
        ins = self.data_inputs(gather, 3)
        _, handle = self.through(ins[0], gather.name)
        _, exit_ = self.through(ins[2], gather.name, {"Identity"})
        if exit_.op != "Exit":
            raise self.fail(gather.name, f"its flow input is a {exit_.op}, not the loop's Exit")
        writes = [
            d
            for d in self.defs.values()
            if d.op == "TensorArrayWriteV3" and self.through(self.data_inputs(d, 4)[0], d.name)[1] is handle
        ]
        if len(writes) != 1:
            raise self.fail(gather.name, f"{len(writes)} writes fill the array it stacks")
        return self.data_inputs(writes[0], 4)[2], writes[0].name

    def classify(self, value_ref, user):
        """("boxes" | "scores" | "count", the NMS node, the padded size or None) of a written value."""
        ref, d = self.through(value_ref, user)
        pad_to = None
        if d.op in ("Pad", "PadV2"):
            ins = self.data_inputs(d, 3 if d.op == "PadV2" else 2)
            if d.op == "PadV2" and float(self.scalar(ins[2], d.name, "pad value")) != 0.0:
                raise self.fail(d.name, "it pads with a nonzero value")
            pad_to = self.pad_target(ins[1], d.name)
            ref, d = self.through(ins[0], d.name)
            count = False
        else:  # tf.cast(tf.shape(kept)[0], int32): the number of kept boxes (the only value a Cast may pass)
            if d.op == "Cast":
                ref, d = self.through(self.data_inputs(d, 1)[0], d.name)
            if d.op != "StridedSlice":
                raise self.fail(d.name, f"a written value is computed by {d.op}")
            ins = self.data_inputs(d, 4)
            _, shape = self.through(ins[0], d.name)
            spec = [self.const(r, d.name).reshape(-1).tolist() for r in ins[1:]]
            if (
                shape.op != "Shape"
                or spec != [[0], [1], [1]]
                or int(host.attr(d, "shrink_axis_mask", 0)) != 1
            ):
                raise self.fail(
                    d.name, "a written value is neither a padded gather nor a count of kept boxes"
                )
            ref, d = self.through(self.data_inputs(shape, 1)[0], shape.name)
            count = True
        if d.op != "GatherV2":
            raise self.fail(d.name, f"the kept values come from a {d.op}, not a gather by the NMS indices")
        params, indices, axis = self.data_inputs(d, 3)
        if int(self.scalar(axis, d.name, "axis")) != 0:
            raise self.fail(d.name, "the gather is not along the box axis")
        index_ref, nms = self.through(indices, d.name)
        if nms.op not in NMS_OPS or index_ref[1] != 0:
            raise self.fail(d.name, f"the gather's indices are not the selected indices of an NMS ({nms.op})")
        nms_ins = self.data_inputs(nms)
        if len(nms_ins) < (2 if nms.op == "NonMaxSuppression" else 4):
            raise self.fail(nms.name, f"{nms.op} has {len(nms_ins)} inputs")
        kind = "count" if count else None
        if not count:
            if self.through(params, d.name)[0] == self.through(nms_ins[0], nms.name)[0]:
                kind = "boxes"
            elif self.through(params, d.name)[0] == self.through(nms_ins[1], nms.name)[0]:
                kind = "scores"
            else:
                raise self.fail(d.name, "the gathered values are neither the NMS's boxes nor its scores")
        return kind, nms, pad_to

    def pad_target(self, ref, user):
        """K of the paddings ``[[0, K - n], [0, 0]...]`` that pad the kept rows to K (``Pack(Pack(0, Sub(K, n)),
        ...)``, as ``tf.pad(kept, [[0, K - n], ...])`` builds them)."""
        _, outer = self.through(ref, user)
        if outer.op != "Pack" or not self.data_inputs(outer):
            raise self.fail(user, "its paddings are not [[0, max - n], ...]")
        rest = self.data_inputs(outer)[1:]
        if any(self.const(r, outer.name).any() for r in rest):
            raise self.fail(user, "it pads other axes than the box axis")
        _, row = self.through(self.data_inputs(outer)[0], outer.name)
        if row.op != "Pack" or len(self.data_inputs(row)) != 2:
            raise self.fail(user, "its paddings are not [[0, max - n], ...]")
        before, after = self.data_inputs(row, 2)
        _, sub = self.through(after, row.name)
        if int(self.scalar(before, row.name, "padding")) != 0 or sub.op != "Sub":
            raise self.fail(user, "its paddings are not [[0, max - n], ...]")
        return int(self.scalar(self.data_inputs(sub, 2)[0], sub.name, "padded size"))

    def candidates(self, ref, user):
        """(loop input, test, threshold) of the candidate filter ``GatherV2(read, Squeeze(Where(test(...))))``."""
        _, gather = self.through(ref, user)
        if gather.op != "GatherV2":
            raise self.fail(user, f"the NMS's input is a {gather.op}, not the thresholded candidates")
        params, indices, axis = self.data_inputs(gather, 3)
        if int(self.scalar(axis, gather.name, "axis")) != 0:
            raise self.fail(gather.name, "the candidates are not gathered along the box axis")
        _, squeeze = self.through(indices, gather.name)
        where = squeeze if squeeze.op == "Where" else None
        if squeeze.op in ("Squeeze", "Reshape"):
            where = self.through(
                self.data_inputs(squeeze, 1 if squeeze.op == "Squeeze" else 2)[0], squeeze.name
            )[1]
        if where is None or where.op != "Where" or len(self.data_inputs(where)) != 1:
            raise self.fail(gather.name, "the candidates are not selected by Where(scores >= threshold)")
        _, test = self.through(self.data_inputs(where)[0], where.name)
        if test.op not in FILTER_OPS:
            raise self.fail(where.name, f"the candidates are selected by {test.op}, not a score threshold")
        scores_read, threshold = self.data_inputs(test, 2)
        return params, scores_read, test, float(self.scalar(threshold, test.name, "threshold"))


def match(defs: dict, output_refs: list, source: str) -> MapNms | None:
    """The map_fn NMS loop that computes ``output_refs`` (each a ``TensorArrayGatherV3`` of the loop, through
    Identity), or None when no output comes out of a TensorArray stack. Raises InvalidModelError on any other
    loop, naming the node."""
    m = _Matcher(defs, source)
    stacked = [i for i, r in enumerate(output_refs) if m.through(r, "outputs")[1].op == "TensorArrayGatherV3"]
    if not stacked:
        return None
    if len(stacked) != len(output_refs):
        raise InvalidModelError(f"{source}: some outputs come out of a while loop and some do not")
    kinds, nms_nodes, pad_targets = {}, set(), set()
    for i in stacked:
        value, write = m.written_value(output_refs[i])
        kind, nms, pad_to = m.classify(value, write)
        kinds[i] = kind
        nms_nodes.add(nms.name)
        pad_targets.add(pad_to)
    if len(nms_nodes) != 1:
        raise InvalidModelError(f"{source}: the loop's outputs come from {len(nms_nodes)} NMS nodes, not one")
    nms = defs[nms_nodes.pop()]
    nms_ins = m.data_inputs(nms)
    if nms.op == "NonMaxSuppressionV4" and bool(host.attr(nms, "pad_to_max_output_size", False)):
        raise m.fail(nms.name, "pad_to_max_output_size is not supported")
    box_params, box_scores_read, box_test, box_t = m.candidates(nms_ins[0], nms.name)
    score_params, score_scores_read, score_test, score_t = m.candidates(nms_ins[1], nms.name)
    if box_test.name != score_test.name:
        raise m.fail(nms.name, "its boxes and scores are selected by different thresholds")
    if m.through(score_params, nms.name)[0] != m.through(score_scores_read, nms.name)[0]:
        raise m.fail(score_test.name, "the threshold is not on the scores the NMS ranks")
    boxes_ref, scatter_b = m.loop_input(box_params, nms.name)
    scores_ref, scatter_s = m.loop_input(score_params, nms.name)
    candidate_refs = (boxes_ref, scores_ref)
    max_out = int(m.scalar(nms_ins[2], nms.name, "max_output_size"))
    if not 0 <= max_out <= MAX_BOXES:
        raise m.fail(nms.name, f"max_output_size {max_out} is out of range")
    if pad_targets - {None, max_out}:
        raise m.fail(nms.name, f"the kept boxes are padded to {sorted(pad_targets - {None})}, not {max_out}")
    iou = float(m.scalar(nms_ins[3], nms.name, "iou_threshold")) if len(nms_ins) > 3 else 0.5
    score = float(m.scalar(nms_ins[4], nms.name, "score_threshold")) if len(nms_ins) > 4 else -np.inf
    if nms.op == "NonMaxSuppression":  # V1: the threshold is an attribute
        iou = float(host.attr(nms, "iou_threshold", 0.5))
    return MapNms(
        boxes_ref=candidate_refs[0],
        scores_ref=candidate_refs[1],
        kinds=kinds,
        candidate_test=FILTER_OPS[box_test.op],
        candidate_threshold=box_t,
        max_output_size=max_out,
        iou_threshold=iou,
        score_threshold=score,
    )
