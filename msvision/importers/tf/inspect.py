"""``python -m msvision inspect model.pb``: what a frozen graph holds and whether msvision can run it.

Reports the op histogram of every node in the file, the ops outside the importer's set, the graph's placeholders
and its unconsumed tensors (the likely inputs and outputs), and the result of importing it for the outputs given
(or guessed): the pruned, folded graph's op histogram, or the error naming what is unsupported. Scalar boolean
placeholders (mode flags such as ``training_flag``) are fixed to False unless given as inputs or in ``fixed``; a
``map_fn`` NMS loop ending the graph is reported as cut at its inputs (its ops are not counted as unsupported).
"""

from __future__ import annotations

import collections

import numpy as np

from ...errors import InvalidModelError
from . import host, nms_loop
from .graphdef import numpy_dtype, read_graphdef
from .importer import BATCH_NORM_OPS, CONV_OPS, IDENTITY_OPS, LOWER, TfGraph

# ops the load-time passes consume (conds on constants, placeholders, ordering-only nodes)
STRUCTURAL_OPS = frozenset({"Placeholder", "PlaceholderWithDefault", "Switch", "Merge", "NoOp"})
SUPPORTED_OPS = (
    (frozenset(LOWER) - {"_Conv"}) | CONV_OPS | BATCH_NORM_OPS | host.HOST_OPS | IDENTITY_OPS | STRUCTURAL_OPS
)


def _consumed(nodes) -> set[str]:
    used = set()
    for n in nodes:
        for text in n.inputs:
            used.add(text.lstrip("^").split(":")[0])
    return used


def _is_flag(n) -> bool:
    shape = host.attr(n, "shape")
    dtype, dims = host.attr(n, "dtype"), getattr(shape, "dims", None)
    known = dims is not None and not getattr(shape, "unknown_rank", False)
    return dtype is not None and numpy_dtype(dtype) == np.bool_ and known and len(dims) == 0


def _loop_ops(nodes, outputs, path) -> set[str]:
    """The ops of a map_fn NMS loop that ``outputs`` come out of (the importer cuts it), else none."""
    defs = {n.name: n for n in nodes}
    try:
        refs = [(t.split(":")[0], int(t.split(":")[1]) if ":" in t else 0) for t in outputs]
        if any(r[0] not in defs for r in refs) or nms_loop.match(defs, refs, path) is None:
            return set()
    except (InvalidModelError, ValueError, IndexError, KeyError):
        return set()
    return nms_loop.LOOP_OPS


def describe(
    path: str, inputs: list[str] | None = None, outputs: list[str] | None = None, fixed: dict | None = None
) -> tuple[str, bool]:
    """A text report of the graph at ``path`` and whether it imports for those inputs and outputs, with the
    placeholders in ``fixed`` ({name: value}) fixed to those values."""
    nodes = read_graphdef(path)
    hist = collections.Counter(n.op for n in nodes)
    used = _consumed(nodes)
    placeholders = [f"{n.name}:0" for n in nodes if n.op == "Placeholder"]
    sinks = [f"{n.name}:0" for n in nodes if n.name not in used and n.op not in ("NoOp", "Const", "Assert")]
    fixed = dict(fixed or {})
    if inputs is None:  # mode flags fixed to False, the other placeholders fed
        for n in nodes:
            if n.op == "Placeholder" and _is_flag(n) and n.name not in fixed:
                fixed[n.name] = False
        inputs = [p for p in placeholders if p.split(":")[0] not in fixed]
    outputs = outputs or sinks
    loop_ops = _loop_ops(nodes, outputs, path)
    unsupported = {op: k for op, k in hist.items() if op not in SUPPORTED_OPS and op not in loop_ops}
    lines = [
        f"{path}: {len(nodes)} nodes, {len(hist)} op types",
        "ops: " + ", ".join(f"{op} {k}" for op, k in hist.most_common()),
        "unsupported ops: " + (", ".join(f"{op} {k}" for op, k in sorted(unsupported.items())) or "none"),
        "placeholders: " + (", ".join(placeholders) or "none"),
        "unconsumed tensors: " + (", ".join(sinks) or "none"),
    ]
    if fixed:
        lines.append("fixed: " + ", ".join(f"{k}={v!r}" for k, v in fixed.items()))
    try:
        graph = TfGraph(path, inputs, outputs, fixed_inputs=fixed)
    except InvalidModelError as e:
        lines.append(f"import for {inputs} -> {outputs}: FAILED: {e}")
        return "\n".join(lines), False
    if graph.map_nms is not None:
        m = graph.map_nms
        lines.append(
            f"map_fn NMS loop: cut at {m.boxes_ref[0]}:{m.boxes_ref[1]} and {m.scores_ref[0]}:{m.scores_ref[1]}, "
            f"run in C (candidates {'>=' if m.candidate_test is np.greater_equal else '>'} "
            f"{m.candidate_threshold:g}, IoU > {m.iou_threshold:g}, "
            f"at most {m.max_output_size})"
        )
    imported = graph.op_histogram()
    lines.append(
        f"import for {inputs} -> {outputs}: ok; after pruning and folding: "
        + ", ".join(f"{op} {k}" for op, k in imported.most_common())
    )
    return "\n".join(lines), True
