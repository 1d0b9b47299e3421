"""``python -m msvision inspect model.pb``: what a frozen graph holds and whether msvision can run it.

Reports the op histogram of every node in the file, the ops outside the importer's set, the graph's placeholders
and its unconsumed tensors (the likely inputs and outputs), and the result of importing it for the outputs given
(or guessed): the pruned, folded graph's op histogram, or the error naming what is unsupported.
"""

from __future__ import annotations

import collections

from ...errors import InvalidModelError
from . import host
from .graphdef import read_graphdef
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


def describe(
    path: str, inputs: list[str] | None = None, outputs: list[str] | None = None
) -> tuple[str, bool]:
    """A text report of the graph at ``path`` and whether it imports for those inputs and outputs."""
    nodes = read_graphdef(path)
    hist = collections.Counter(n.op for n in nodes)
    unsupported = {op: k for op, k in hist.items() if op not in SUPPORTED_OPS}
    used = _consumed(nodes)
    placeholders = [f"{n.name}:0" for n in nodes if n.op == "Placeholder"]
    sinks = [f"{n.name}:0" for n in nodes if n.name not in used and n.op not in ("NoOp", "Const", "Assert")]
    inputs = inputs or placeholders
    outputs = outputs or sinks
    lines = [
        f"{path}: {len(nodes)} nodes, {len(hist)} op types",
        "ops: " + ", ".join(f"{op} {k}" for op, k in hist.most_common()),
        "unsupported ops: " + (", ".join(f"{op} {k}" for op, k in sorted(unsupported.items())) or "none"),
        "placeholders: " + (", ".join(placeholders) or "none"),
        "unconsumed tensors: " + (", ".join(sinks) or "none"),
    ]
    try:
        graph = TfGraph(path, inputs, outputs)
    except InvalidModelError as e:
        lines.append(f"import for {inputs} -> {outputs}: FAILED: {e}")
        return "\n".join(lines), False
    imported = graph.op_histogram()
    lines.append(
        f"import for {inputs} -> {outputs}: ok; after pruning and folding: "
        + ", ".join(f"{op} {k}" for op, k in imported.most_common())
    )
    return "\n".join(lines), True
