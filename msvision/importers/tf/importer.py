"""A TensorFlow frozen graph lowered onto the C core's ops, generic over graphs (no per-model code).

Load time (once, shape-independent): parse the GraphDef; follow Identity-like ops and drop control inputs and
devices; fold TF1 ``cond``s whose predicate is a constant (Switch/Merge: the dead branch disappears); prune to the
requested outputs; evaluate constant subgraphs in NumPy (``host``); fold each convolution's BiasAdd/Add and
inference FusedBatchNorm into its weights, and a zero Pad before it into its padding; refuse any op or attribute
outside the supported set, naming the op, the node and the attribute.

Run time: the shape subgraphs (``Shape``, ``StridedSlice``, ``Pack``, arithmetic...) are evaluated on the host
once the input size is known, so the graph accepts any image size; the lowered msvision graph and its session are
cached per input shape (an LRU of ``max_plans`` entries). TensorFlow's NHWC tensors live in the core's NCHW
logical layout: each activation records which core axis holds each TF axis, so Transpose/Squeeze/ExpandDims and
size-1 reshapes are free, and the sessions take and return NHWC buffers.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import numpy as np

from ...errors import GraphError, InvalidInputError, InvalidModelError, ShapeError
from ...graph import Graph, Session
from . import host, nms_loop
from .graphdef import NodeDef, numpy_dtype, parse_graphdef, read_graphdef

# what a malformed node (an attribute of the wrong kind, a missing input, a zero stride) raises in the passes
MALFORMED = (TypeError, ValueError, ZeroDivisionError, OverflowError, IndexError, KeyError, AttributeError)
SHAPE_OPS = frozenset({"Shape", "Size", "Rank"})  # host values of an activation's shape, not of its data
MAX_FOLDED_BYTES = 1 << 30  # all the values constant folding computes (the file's own constants aside)
MAX_TILE_ELEMENTS = 1 << 31  # a tiled activation larger than this is refused before any copy is planned
IDENTITY_OPS = frozenset({"Identity", "StopGradient", "Snapshot", "PreventGradient", "EnsureShape"})
CONV_OPS = frozenset({"Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput"})
BATCH_NORM_OPS = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"})
# ops that move values without arithmetic: a deferred integer cast may pass through them to an output
LAYOUT_OPS = frozenset(
    {
        "ConcatV2",
        "Squeeze",
        "ExpandDims",
        "Reshape",
        "Transpose",
        "Slice",
        "StridedSlice",
        "Split",
        "SplitV",
        "Pack",
        "Unpack",
        "Tile",
        "MirrorPad",
    }
)
FLOAT32 = np.dtype(np.float32)
NHWC = (0, 2, 3, 1)  # the core axis of each TF axis of an NHWC tensor
DEAD = None  # the resolution of an output on a cond's untaken branch


@dataclass
class Node:
    """A node after the load-time passes: inputs are (node name, output index) pairs."""

    name: str
    op: str
    inputs: list
    attrs: dict


def _canonical_axes(shape, axes):
    """``axes`` of a 4-D activation with its size-1 axes moved to their NHWC core axes where free. A size-1 axis
    holds no data, so any free size-1 core axis can stand for it: without this, a Squeeze then an ExpandDims (or a
    transpose through size-1 axes) would leave an image whose channel sits on the core's batch axis, which NHWC
    ops refuse although the data is in place."""
    if len(shape) != 4 or sorted(axes) != [0, 1, 2, 3]:
        return axes
    out = [ax if d != 1 else None for ax, d in zip(axes, shape)]
    free = [ax for ax in range(4) if ax not in out]
    for i, ax in enumerate(out):
        if ax is None and NHWC[i] in free:
            out[i] = NHWC[i]
            free.remove(NHWC[i])
    return tuple(ax if ax is not None else free.pop(0) for ax in out)


def _relayout_ones(act, axes):
    """``act`` seen with ``axes`` if that only moves its size-1 axes (no data moves), else None."""
    if len(axes) != len(act.axes) or sorted(axes) != sorted(act.axes):
        return None
    if any(d != 1 and a != b for d, a, b in zip(act.shape, act.axes, axes)):
        return None
    return Act(act.tid, act.shape, tuple(axes), act.dtype)


class _Tail:
    """A value of the host tail (computed in NumPy after the session runs): output ``key`` = (node, index)."""

    def __init__(self, key):
        self.key = key


@dataclass
class Act:
    """A graph activation: core tensor ``tid``, its TF ``shape``, the core axis of each TF axis (``axes``; the
    core's other axes have size 1) and its TF dtype (an integer dtype: a truncating cast deferred to the output)."""

    tid: int
    shape: tuple
    axes: tuple
    dtype: np.dtype = FLOAT32


def _ref(text: str, node: str):
    if text.startswith("^"):
        return None  # a control input: ordering only, dropped
    name, sep, index = text.rpartition(":")
    if not sep or not index.isdigit():
        return (text, 0)
    return (name, int(index))


def _error(node, message):
    return InvalidModelError(f"{node.op} {node.name!r}: {message}")


def _attr_text(value):
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _require(node, name, allowed, default=None):
    value = host.attr(node, name, default)
    if _attr_text(value) not in allowed:
        raise _error(
            node, f"attribute {name}={_attr_text(value)!r} is not supported (supported: {sorted(allowed)})"
        )
    return _attr_text(value)


class TfGraph:
    """A frozen graph pruned to ``outputs`` (tensor names such as ``output_png:0``), fed by ``inputs``
    (placeholders such as ``input_image:0``); ``run(*arrays)`` returns the outputs as TF would."""

    def __init__(
        self,
        graph,
        inputs: list[str],
        outputs: list[str],
        *,
        threads: int = 0,
        max_plans: int = 8,
        memory_limit: int = 0,
        source: str | None = None,
        fixed_inputs: dict | None = None,
    ) -> None:
        if isinstance(graph, (bytes, bytearray, memoryview)):
            self.source = source or "graph"
            nodes = parse_graphdef(bytes(graph), self.source)
        elif isinstance(graph, str):
            self.source = source or graph
            nodes = read_graphdef(graph)
        else:
            self.source = source or "graph"
            nodes = list(graph)
        self.threads = threads
        self.max_plans = max(1, int(max_plans))
        self.memory_limit = memory_limit
        self._defs: dict[str, NodeDef] = {}
        for n in nodes:
            if n.name in self._defs:
                raise InvalidModelError(f"{self.source}: two nodes are named {n.name!r}")
            self._defs[n.name] = n
        self.input_refs = [self._tensor_ref(t, "input") for t in inputs]
        self.output_refs = [self._tensor_ref(t, "output") for t in outputs]
        try:
            for name, value in (fixed_inputs or {}).items():
                self._fix_input(name, value)
            # a map_fn NMS loop ending the graph: the graph is cut at the loop's inputs, the loop runs in C after
            self.map_nms = nms_loop.match(self._defs, self.output_refs, self.source)
        except MALFORMED as e:
            if isinstance(e, InvalidModelError):
                raise
            raise InvalidModelError(f"{self.source}: malformed graph ({type(e).__name__}: {e})") from None
        self.requested_outputs = len(self.output_refs)
        if self.map_nms is not None:
            self.output_refs = [self.map_nms.boxes_ref, self.map_nms.scores_ref]
        self.input_names = [r[0] for r in self.input_refs]
        if len(set(self.input_names)) != len(self.input_names):
            raise InvalidModelError(f"{self.source}: an input is named twice in {list(inputs)}")
        for name in self.input_names:
            if self._defs[name].op not in ("Placeholder", "PlaceholderWithDefault"):
                raise InvalidModelError(
                    f"{self.source}: input {name!r} is a {self._defs[name].op}, not a placeholder"
                )
        self._consts: dict[tuple, np.ndarray] = {}
        self._resolved: dict[tuple, tuple | None] = {}
        self._dead_memo: dict[tuple, bool] = {}
        try:
            self.order = self._prune()
            self._fold_constants()
            self._fuse()
            self._check_supported()
        except RecursionError:
            raise InvalidModelError(f"{self.source}: the graph nests too deeply") from None
        except MALFORMED as e:  # an attribute or input of an unexpected kind: a malformed graph
            raise InvalidModelError(f"{self.source}: malformed graph ({type(e).__name__}: {e})") from None
        self._plans: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    # ---- load time -------------------------------------------------------------------------------------------

    def _fix_input(self, name, value):
        """Placeholder ``name`` becomes a constant (a mode flag such as ``training_flag`` that the caller always
        feeds the same value), so the conds on it fold at load time."""
        d = self._defs.get(name)
        if d is None or d.op not in ("Placeholder", "PlaceholderWithDefault"):
            raise InvalidModelError(f"{self.source}: the graph has no placeholder {name!r} to fix")
        dtype = host.attr(d, "dtype")
        value = np.asarray(value, dtype=numpy_dtype(dtype) if dtype is not None else None)
        self._defs[name] = NodeDef(name=name, op="Const", inputs=[], device="", attrs={"value": value})

    def _tensor_ref(self, text, what):
        ref = _ref(text, text)
        if ref is None or ref[0] not in self._defs:
            raise InvalidModelError(f"{self.source}: the graph has no {what} tensor {text!r}")
        return ref

    def _node_def(self, name, user):
        d = self._defs.get(name)
        if d is None:
            raise InvalidModelError(
                f"{self.source}: node {user!r} takes input {name!r}, which does not exist"
            )
        return d

    def _data_inputs(self, d: NodeDef):
        return [r for r in (_ref(t, d.name) for t in d.inputs) if r is not None]

    def _resolve(self, ref, user):
        """``ref`` with Identity-like ops followed and constant conds folded; DEAD on an untaken branch."""
        start = ref
        if start in self._resolved:
            return self._resolved[start]
        seen = 0
        while True:
            seen += 1
            if seen > len(self._defs) + 1:
                raise InvalidModelError(f"{self.source}: a cycle of Identity nodes through {ref[0]!r}")
            d = self._node_def(ref[0], user)
            ins = self._data_inputs(d)
            if d.op in IDENTITY_OPS or (d.op == "PlaceholderWithDefault" and d.name not in self.input_names):
                if not ins:
                    raise InvalidModelError(f"{self.source}: {d.op} {d.name!r} has no input")
                ref = ins[0]
                continue
            if d.op == "Switch":
                if ref[1] != self._switch_taken(d):
                    result = DEAD
                    break
                ref = ins[0]
                continue
            if d.op == "Merge":
                if ref[1] != 0:
                    raise InvalidModelError(
                        f"{self.source}: Merge {d.name!r}: its value_index output is used"
                    )
                # the first input not computed from an untaken branch (a branch's nodes resolve to themselves:
                # only the Switch at its root is dead, so deadness is followed through the branch)
                live = [i for i in ins if not self._dead(i, d.name)]
                result = self._resolve(live[0], d.name) if live else DEAD
                break
            result = ref
            break
        self._resolved[start] = result
        return result

    def _switch_taken(self, d):
        """The output (0: false, 1: true) a Switch on a constant predicate forwards its data to."""
        ins = self._data_inputs(d)
        if len(ins) != 2:
            raise InvalidModelError(f"{self.source}: Switch {d.name!r} needs data and predicate inputs")
        pred = self._load_time_value(ins[1], d.name)
        if pred is None or pred.size != 1:
            raise InvalidModelError(
                f"{self.source}: Switch {d.name!r}: its predicate is not a constant (only conds on "
                "constants, such as a frozen training flag, are supported)"
            )
        return int(bool(pred.reshape(-1)[0]))

    def _dead_deps(self, d, index):
        """The tensors whose deadness decides that of output ``index`` of ``d`` (control inputs as (name, None):
        a node is dead when a node it waits on is), and whether all of them (Merge) or any must be dead."""
        deps = []
        for text in d.inputs:
            if text.startswith("^"):
                deps.append((text[1:], None))
            else:
                deps.append(_ref(text, d.name))
        if d.op == "Merge":
            return [r for r in deps if r[1] is not None], all
        return deps, any

    def _dead(self, ref, user):
        """Whether ``ref`` (an output, or (name, None) for a node's control output) is dead in TF's executor
        semantics: an untaken Switch output, or computed from a dead tensor by any op but Merge, which is dead
        only when all its inputs are. Iterative (branches can be deep); a cycle (a while loop) counts as live."""
        memo = self._dead_memo
        stack, visiting = [ref], set()
        while stack:
            r = stack[-1]
            if r in memo:
                stack.pop()
                continue
            d = self._node_def(r[0], user)
            deps, combine = self._dead_deps(d, r[1])
            pending = [q for q in deps if q not in memo and q not in visiting]
            if pending and r not in visiting:
                visiting.add(r)
                stack.extend(pending)
                continue
            dead = combine(memo.get(q, False) for q in deps) if deps else False
            if d.op == "Switch" and r[1] is not None and not dead:
                dead = r[1] != self._switch_taken(d)
            memo[r] = dead
            visiting.discard(r)
            stack.pop()
        return memo[ref]

    def _load_time_value(self, ref, user):
        """The value of ``ref`` if it depends on constants only (a cond predicate), else None."""
        ref = self._resolve(ref, user)
        if ref is DEAD:
            return None
        if ref in self._consts:
            return self._consts[ref]
        d = self._defs[ref[0]]
        if d.op == "Const":
            value = host.evaluate(d, [])[0]
        elif d.op in host.HOST_OPS and d.op not in ("Shape", "Size", "Rank"):
            values = [self._load_time_value(r, d.name) for r in self._data_inputs(d)]
            if any(v is None for v in values):
                return None
            outs = host.evaluate(d, values)
            for i, v in enumerate(outs):
                self._consts[(d.name, i)] = v
            value = outs[ref[1]] if ref[1] < len(outs) else None
        else:
            return None
        self._consts[ref] = value
        return value

    def _prune(self) -> list[Node]:
        """The nodes the outputs need, inputs resolved, in topological order (iterative: graphs can be deep)."""
        order, state = [], {}
        nodes: dict[str, Node] = {}
        stack = []
        for ref in self.output_refs:
            r = self._resolve(ref, "outputs")
            if r is DEAD:
                raise InvalidModelError(f"{self.source}: output {ref[0]!r} lies on a cond branch never taken")
            stack.append((r[0], False))
        self.output_refs = [self._resolve(r, "outputs") for r in self.output_refs]
        while stack:
            name, done = stack.pop()
            if done:
                if state[name] != 2:
                    state[name] = 2
                    order.append(nodes[name])
                continue
            if state.get(name) == 2:
                continue
            if state.get(name) == 1:
                raise InvalidModelError(f"{self.source}: the graph has a cycle through {name!r}")
            state[name] = 1
            d = self._defs[name]
            ins = []
            if not (d.op == "Placeholder" or name in self.input_names):
                for r in self._data_inputs(d):
                    rr = self._resolve(r, name)
                    if rr is DEAD:
                        raise InvalidModelError(
                            f"{self.source}: {d.op} {name!r} takes {r[0]!r} from a cond branch never taken"
                        )
                    ins.append(rr)
            nodes[name] = Node(name, d.op, ins, dict(d.attrs))
            stack.append((name, True))
            for r in reversed(ins):
                if state.get(r[0]) != 2:
                    if state.get(r[0]) == 1:
                        raise InvalidModelError(f"{self.source}: the graph has a cycle through {r[0]!r}")
                    stack.append((r[0], False))
        for name in self.input_names:
            if name not in nodes:
                raise InvalidModelError(f"{self.source}: the outputs do not depend on input {name!r}")
        return order

    def _fold_constants(self):
        """Nodes computable from constants alone become constants (weights behind Identity, Mul by a scale...)."""
        folded, computed = {}, 0
        for n in self.order:
            if n.op == "Const":
                folded[(n.name, 0)] = host.evaluate(n, [])[0]
            elif (
                n.op in host.HOST_OPS
                and n.name not in self.input_names
                and n.op not in ("Placeholder",)
                and all(r in folded for r in n.inputs)
            ):
                outs = host.evaluate(n, [folded[r] for r in n.inputs])
                for i, v in enumerate(outs):
                    folded[(n.name, i)] = v
                    computed += v.nbytes
                if computed > MAX_FOLDED_BYTES:  # each value is bounded; so is what they add up to
                    raise InvalidModelError(
                        f"{self.source}: the constant subgraphs compute over 1 GiB of values"
                    )
        self._consts = folded

    def _const(self, ref):
        return self._consts.get(ref)

    def _fuse(self):
        """Convolutions with their weights in the core's layout, their bias, BatchNorm and zero padding folded."""
        uses = collections.Counter(r for n in self.order for r in n.inputs)
        uses.update(self.output_refs)
        alias: dict[tuple, tuple] = {}
        convs: dict[str, Node] = {}
        by_name = {n.name: n for n in self.order}
        for n in self.order:
            n.inputs = [alias.get(r, r) for r in n.inputs]
            if (n.name, 0) in self._consts:
                continue
            if n.op in CONV_OPS:
                convs[n.name] = self._make_conv(n, by_name, uses, alias)
                continue
            # the convolution output this node takes (an Add's bias may come first: Add is commutative)
            candidates = n.inputs if n.op in ("Add", "AddV2") else n.inputs[:1]
            x = next((r for r in candidates if r[1] == 0 and r[0] in convs), None)
            conv = convs.get(x[0]) if x is not None else None
            if conv is None or uses[x] != 1:
                continue
            if n.op in ("BiasAdd", "Add", "AddV2"):
                if n.op == "BiasAdd":
                    _require(n, "data_format", {"NHWC"}, b"NHWC")
                others = [r for r in n.inputs if r != x]
                b = self._const(others[0]) if len(others) == 1 else None
                out_c = conv.attrs["out_channels"]
                if (
                    b is None
                    or b.dtype.kind != "f"
                    or b.size != out_c
                    or b.shape[-1:] != (out_c,)
                    or b.ndim > 4  # (a higher rank would broadcast the output's rank up)
                ):
                    continue
                conv.attrs["bias"] = conv.attrs["bias"] + b.reshape(-1).astype(np.float32)
            elif n.op in BATCH_NORM_OPS:
                if not self._fold_batch_norm(conv, n, uses):
                    continue
            else:
                continue
            conv.attrs["folded"].append(n.name)
            alias[(n.name, 0)] = x
            uses[x] = uses[(n.name, 0)]
        for n in self.order:
            n.inputs = [alias.get(r, r) for r in n.inputs]
        self.output_refs = [alias.get(r, r) for r in self.output_refs]
        # drop what the fusions made unused (folded nodes, the Pads merged into convolutions)
        needed, stack = set(), [r[0] for r in self.output_refs]
        while stack:
            name = stack.pop()
            if name in needed:
                continue
            needed.add(name)
            stack.extend(r[0] for r in by_name[name].inputs)
        self.order = [n for n in self.order if n.name in needed]

    def _make_conv(self, n, by_name, uses, alias):
        _require(n, "data_format", {"NHWC"}, b"NHWC")
        _require(n, "padding", {"SAME", "VALID", "EXPLICIT"})
        strides = list(host.attr(n, "strides", [1, 1, 1, 1]))
        dilations = list(host.attr(n, "dilations", [1, 1, 1, 1]))
        if len(strides) != 4 or strides[0] != 1 or strides[3] != 1 or min(strides) < 1:
            raise _error(n, f"attribute strides={strides} is not supported (only spatial strides)")
        if len(dilations) != 4 or dilations[0] != 1 or dilations[3] != 1 or min(dilations) < 1:
            raise _error(n, f"attribute dilations={dilations} is not supported (only spatial dilations)")
        x_index, f_index = (2, 1) if n.op == "Conv2DBackpropInput" else (0, 1)
        if len(n.inputs) != (3 if n.op == "Conv2DBackpropInput" else 2):
            raise _error(n, "wrong number of inputs")
        f = self._const(n.inputs[f_index])
        if f is None:
            raise _error(n, "its filter is not a constant")
        if f.ndim != 4 or f.dtype.kind != "f":
            raise _error(n, f"filter of shape {f.shape} and type {f.dtype} is not a 4-D float filter")
        f = f.astype(np.float32)
        kh, kw = f.shape[:2]
        if n.op == "Conv2D":
            weight = f.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        elif n.op == "DepthwiseConv2dNative":
            c, m = f.shape[2:]
            weight = f.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)  # output channel c * m + k, as TF
        else:
            weight = f.transpose(3, 2, 0, 1)  # (kh, kw, out, in) -> ConvTranspose's (in, out, kh, kw)
        explicit = None
        if _attr_text(host.attr(n, "padding")) == "EXPLICIT":
            p = list(host.attr(n, "explicit_paddings", []))
            if len(p) != 8 or any(v < 0 for v in p) or p[:2] != [0, 0] or p[6:] != [0, 0]:
                raise _error(n, f"attribute explicit_paddings={p} is not supported (spatial, non-negative)")
            explicit = (p[2], p[4], p[3], p[5])  # top, left, bottom, right
        pre_pad, folded = (0, 0, 0, 0), []
        x = n.inputs[x_index]
        pad = by_name.get(x[0])
        if n.op != "Conv2DBackpropInput" and pad is not None and pad.op in ("Pad", "PadV2") and uses[x] == 1:
            paddings = self._const(pad.inputs[1]) if len(pad.inputs) > 1 else None
            value = self._const(pad.inputs[2]) if pad.op == "PadV2" and len(pad.inputs) > 2 else np.zeros(1)
            if paddings is not None and paddings.shape == (4, 2) and value is not None and value.size == 1:
                p = paddings.astype(np.int64)
                if (
                    not p[0].any()
                    and not p[3].any()
                    and (p >= 0).all()
                    and float(value.reshape(-1)[0]) == 0.0
                ):
                    pre_pad = (int(p[1, 0]), int(p[2, 0]), int(p[1, 1]), int(p[2, 1]))
                    folded.append(pad.name)
                    x = pad.inputs[0]
                    n.inputs[x_index] = x
        out_c = weight.shape[1] if n.op == "Conv2DBackpropInput" else weight.shape[0]
        n.attrs = {
            "kind": n.op,
            "weight": np.ascontiguousarray(weight),
            "bias": np.zeros(out_c, np.float32),
            "out_channels": out_c,
            "kernel": (kh, kw),
            "strides": (strides[1], strides[2]),
            "dilations": (dilations[1], dilations[2]),
            "padding": _attr_text(host.attr(n, "padding")),
            "explicit": explicit,
            "pre_pad": pre_pad,
            "x_index": x_index,
            "in_channels": f.shape[2],  # the filter's (a depthwise one must match the input)
            "folded": folded,  # the TF nodes merged into this one (Pad, BiasAdd, FusedBatchNorm)
        }
        n.op = "_Conv"  # the node now carries its weights in the core's layout
        return n

    def _fold_batch_norm(self, conv, bn, uses):
        if bool(host.attr(bn, "is_training", True)):
            return False
        _require(bn, "data_format", {"NHWC"}, b"NHWC")
        if any(uses[(bn.name, i)] for i in range(1, 6)):
            return False
        params = [self._const(r) for r in bn.inputs[1:5]]
        out_c = conv.attrs["out_channels"]
        if len(params) != 4 or any(p is None or p.size != out_c for p in params):
            return False
        gamma, beta, mean, var = (p.reshape(-1).astype(np.float32) for p in params)
        scale = gamma / np.sqrt(var + np.float32(host.attr(bn, "epsilon", 1e-4)))
        w = conv.attrs["weight"]
        if conv.attrs["kind"] == "Conv2DBackpropInput":  # output channels on axis 1
            w = w * scale.reshape(1, -1, 1, 1)
        else:
            w = w * scale.reshape(-1, 1, 1, 1)
        conv.attrs["weight"] = np.ascontiguousarray(w, np.float32)
        conv.attrs["bias"] = ((conv.attrs["bias"] - mean) * scale + beta).astype(np.float32)
        return True

    def _check_supported(self):
        """Every node computable: a constant, a fed placeholder, a node of the lowering table, or a host op whose
        inputs are known before the graph runs (constants and shapes); anything else is named here, at load."""
        unsupported = collections.Counter()
        examples = {}
        data = set()  # nodes whose values depend on the fed data (not only on its shape)
        for n in self.order:
            if (n.name, 0) in self._consts:
                continue
            if n.name in self.input_names:
                data.add(n.name)
                continue
            if n.op == "Placeholder":
                raise InvalidModelError(
                    f"{self.source}: the outputs need placeholder {n.name!r}, which is not among the inputs "
                    f"{[f'{name}:0' for name in self.input_names]}"
                )
            depends = any(r[0] in data for r in n.inputs) and n.op not in SHAPE_OPS
            if depends:
                data.add(n.name)
            if n.op in LOWER or (n.op in host.HOST_OPS and not depends):
                continue
            unsupported[n.op] += 1
            examples.setdefault(n.op, n.name)
        if unsupported:
            listed = ", ".join(
                f"{op} (x{k}, e.g. node {examples[op]!r})" for op, k in sorted(unsupported.items())
            )
            raise InvalidModelError(f"{self.source}: unsupported TensorFlow ops: {listed}")
        for n in self.order:
            check = ATTR_CHECKS.get(n.op)
            if check is not None and (n.name, 0) not in self._consts:
                check(n)

    def op_histogram(self) -> collections.Counter:
        """Ops of the pruned, folded graph (constants counted once as Const)."""
        hist = collections.Counter()
        for n in self.order:
            if (n.name, 0) in self._consts:
                hist["Const"] += 1
            elif n.op == "_Conv":
                hist[n.attrs["kind"]] += 1
                for name in n.attrs["folded"]:
                    hist[self._defs[name].op] += 1
            else:
                hist[n.op] += 1
        return hist

    # ---- run time --------------------------------------------------------------------------------------------

    def run(self, *arrays):
        if len(arrays) != len(self.input_refs):
            raise InvalidInputError(f"this graph takes {len(self.input_refs)} input(s), got {len(arrays)}")
        feeds = []
        for name, a in zip(self.input_names, arrays):
            a = np.asarray(a)
            if a.dtype.kind not in "fiub":
                raise InvalidInputError(f"input {name!r} must be a numeric array, got {a.dtype}")
            d = self._defs[name]
            declared = host.attr(d, "shape")
            dims = getattr(declared, "dims", None)
            if dims is not None and (
                len(dims) != a.ndim or any(want >= 0 and want != got for want, got in zip(dims, a.shape))
            ):
                raise InvalidInputError(f"input {name!r} must have shape {dims} (-1: any), got {a.shape}")
            if a.ndim > 5 or a.size == 0:
                raise InvalidInputError(f"input {name!r}: unsupported shape {a.shape}")
            feeds.append(a)
        key = tuple(a.shape for a in feeds)
        plan = self._plan_for(key)
        with plan.lock:
            outs = plan.session.run([feed(a) for feed, a in zip(plan.feeders, feeds)]) if plan.session else []
        results = [plan.emit(i, outs) for i in range(len(plan.outputs))]
        n_out = len(self.output_refs)
        if plan.tail:
            tail = plan.run_tail(results[n_out:])
            missing = [v.key for v in plan.outputs if isinstance(v, _Tail) and v.key not in tail]
            if missing:
                raise InvalidModelError(f"{self.source}: output {missing[0][0]}:{missing[0][1]} has no value")
            results = [tail[v.key] if isinstance(v, _Tail) else r for v, r in zip(plan.outputs, results)]
        results = results[:n_out]
        if self.map_nms is None:
            return results
        by_kind = self.map_nms.apply(*results)
        return [by_kind[self.map_nms.kinds[i]] for i in range(self.requested_outputs)]

    def _plan_for(self, key):
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        plan = _Plan(self, key)  # built outside the lock: other shapes keep running
        with self._lock:
            self._plans[key] = plan
            self._plans.move_to_end(key)
            while len(self._plans) > self.max_plans:
                self._plans.popitem(last=False)
        return plan

    def steps(self, *shapes) -> list[str]:
        """The plan of the input shapes given (or of the last shape run): 'op: implementation [layouts]'."""
        with self._lock:
            if shapes:
                plan = self._plans.get(tuple(tuple(s) for s in shapes))
            else:
                plan = next(reversed(self._plans.values()), None)
        return plan.session.steps() if plan is not None and plan.session is not None else []


class _Plan:
    """The msvision graph of one input shape, its session and the conversions of its inputs and outputs."""

    def __init__(self, tf: TfGraph, shapes):
        self.lock = threading.Lock()
        g = Graph()
        self.g = g
        self.tf = tf
        values: dict[tuple, object] = {}
        self.feeders = []
        # the host tail: nodes after a reshape that moves data between axes (an SSD head's [B, H, W, A * 4] ->
        # [B, H * W * A, 4]) are evaluated in NumPy on the session's outputs, in order
        self.tail: list = []
        self.frontier: list[Act] = []
        # the graph's inputs (and the feeders) in the order run() takes them, not the graph's topological order
        by_name = {n.name: n for n in tf.order}
        for name, shape in zip(tf.input_names, shapes):
            if (name, 0) not in values:
                values[(name, 0)] = self._input(by_name[name], shape)
        for n in tf.order:
            if (n.name, 0) in tf._consts:
                continue
            if n.name in tf.input_names:
                continue
            ins = []
            for r in n.inputs:
                v = values.get(r, tf._consts.get(r))
                if v is None:
                    raise InvalidModelError(
                        f"{tf.source}: {n.op} {n.name!r}: input {r[0]}:{r[1]} has no value"
                    )
                ins.append(v)
            if any(isinstance(v, _Tail) for v in ins) or self._starts_tail(n, ins):
                self._defer(n, ins, values)
                continue
            try:
                if all(isinstance(v, np.ndarray) for v in ins) and n.op in host.HOST_OPS:
                    outs = host.evaluate(n, ins)
                else:
                    outs = LOWER[n.op](self, n, ins)
            except ShapeError as e:  # this input size does not fit the graph (e.g. too small for its strides)
                raise ShapeError(
                    f"{tf.source}: {n.op} {n.name!r} on input shapes {list(shapes)}: {e}"
                ) from None
            except (GraphError, *MALFORMED) as e:
                if isinstance(e, InvalidModelError):
                    raise
                raise InvalidModelError(
                    f"{tf.source}: {n.op} {n.name!r} on input shapes {list(shapes)}: {e}"
                ) from None
            for i, v in enumerate(outs):
                values[(n.name, i)] = v
        self.outputs = []
        for r in tf.output_refs:
            v = values.get(r, tf._consts.get(r))
            if v is None:
                raise InvalidModelError(f"{tf.source}: output {r[0]}:{r[1]} has no value")
            self.outputs.append(v)
        self.outputs.extend(self.frontier)  # the activations the host tail starts from
        # each core tensor is one session output, however many outputs (or views of it) read it
        self.session_tids: list[int] = []
        for v in self.outputs:
            if isinstance(v, Act) and v.tid not in self.session_tids:
                try:
                    g.output(v.tid)
                except GraphError as e:
                    raise InvalidModelError(f"{tf.source}: {e}") from None
                self.session_tids.append(v.tid)
        self.session = None  # outputs computed on the host alone (from shapes) need no session
        if self.session_tids:
            try:
                g.finalize()
                self.session = Session(
                    g, threads=tf.threads, layout="nhwc", max_plans=1, memory_limit=tf.memory_limit
                )
            except GraphError as e:
                raise InvalidModelError(f"{tf.source}: {e}") from None

    # the host tail -------------------------------------------------------------------------------------------

    def _starts_tail(self, n, ins):
        """A Reshape of an activation that reorders its data (the core has no such op): the tail starts here."""
        if (
            n.op != "Reshape"
            or len(ins) != 2
            or not isinstance(ins[0], Act)
            or not isinstance(ins[1], np.ndarray)
        ):
            return False
        x = ins[0]
        shape = host.reshape_target(n, x.shape, _host_int_list(n, ins[1], "shape"))
        return [d for d in x.shape if d != 1] != [d for d in shape if d != 1]

    def _defer(self, n, ins, values):
        """``n`` joins the host tail: its activation inputs become session outputs, its outputs host values."""
        if n.op not in host.HOST_OPS:
            raise _error(n, "follows a reshape that moves data between axes, and cannot run on the host")
        sources = []
        for v in ins:
            if isinstance(v, Act):
                if v not in self.frontier:
                    self.frontier.append(v)
                sources.append(("frontier", self.frontier.index(v)))
            elif isinstance(v, _Tail):
                sources.append(("tail", v.key))
            else:
                sources.append(("const", v))
        self.tail.append((n, sources))
        count = 1
        if n.op in host.MULTI:  # Split and SplitV: num_split; Unpack: num
            count = int(host.attr(n, "num_split", host.attr(n, "num", host.MAX_OUTPUTS)))
        for i in range(max(1, min(count, host.MAX_OUTPUTS))):
            values[(n.name, i)] = _Tail((n.name, i))

    def run_tail(self, frontier_values: list) -> dict:
        """The host tail's values by (node, output) from the frontier activations' values."""
        computed: dict[tuple, np.ndarray] = {}
        for n, sources in self.tail:
            args = []
            for kind, key in sources:
                if kind == "frontier":
                    args.append(frontier_values[key])
                elif kind == "tail":
                    if key not in computed:
                        raise InvalidModelError(
                            f"{self.tf.source}: {n.op} {n.name!r}: input {key} has no value"
                        )
                    args.append(computed[key])
                else:
                    args.append(key)
            try:
                outs = host.evaluate(n, args)
            except InvalidModelError:
                raise
            except MALFORMED as e:  # inputs of shapes or kinds the op does not take
                raise InvalidModelError(
                    f"{self.tf.source}: {n.op} {n.name!r}: {type(e).__name__}: {e}"
                ) from None
            for i, out in enumerate(outs):
                computed[(n.name, i)] = out
        return computed

    # inputs and outputs ---------------------------------------------------------------------------------------

    def _input(self, n, shape):
        rank = len(shape)
        if rank == 4:
            core, axes = (shape[0], shape[3], shape[1], shape[2]), NHWC
        elif rank == 3:  # an unbatched HWC image: a batch of one
            core, axes = (1, shape[2], shape[0], shape[1]), (2, 3, 1)
        else:
            core, axes = tuple(shape), tuple(range(rank))
        tid = self.g.input(shape=core)
        if rank in (3, 4):
            core_nhwc = (core[0], core[2], core[3], core[1])
            self.feeders.append(lambda a: np.ascontiguousarray(a, np.float32).reshape(core_nhwc))
        else:
            self.feeders.append(lambda a: np.ascontiguousarray(a, np.float32))
        return Act(tid, tuple(shape), axes)

    def emit(self, i, outs):
        v = self.outputs[i]
        if isinstance(v, _Tail):
            return None  # computed by run_tail
        if not isinstance(v, Act):
            return v.copy()
        a = outs[self.session_tids.index(v.tid)]
        core = self.g.shape(v.tid)
        # the session's buffer holds the core axes in NHWC order for 4-D tensors
        order = list(NHWC) if len(core) == 4 else list(range(len(core)))
        positions = [order.index(ax) for ax in v.axes]
        rest = [p for p in range(a.ndim) if p not in positions]
        a = np.transpose(a, positions + rest).reshape(v.shape)
        if v.dtype.kind in "iub":  # a deferred truncating cast (TF's Cast from float)
            if v.dtype.kind == "b":
                return a != 0
            info = np.iinfo(v.dtype)
            a = np.clip(np.nan_to_num(np.trunc(a)), info.min, info.max)  # as the host's Cast
        return np.ascontiguousarray(a.astype(v.dtype, copy=False))

    # helpers for the lowering table ---------------------------------------------------------------------------

    def core_shape(self, act):
        return tuple(self.g.shape(act.tid))

    def nhwc(self, act, node, what="input"):
        if not isinstance(act, Act):
            raise _error(node, f"its {what} is a constant (only activations are supported here)")
        if len(act.shape) != 4 or act.axes != NHWC:
            raise _error(node, f"its {what} of shape {act.shape} is not an NHWC image tensor in this graph")
        self.float_only(act, node)
        return act.tid

    def float_only(self, act, node):
        if act.dtype.kind != "f":
            raise _error(node, f"arithmetic on a {act.dtype} activation (a truncating Cast) is not supported")

    def act(self, tid, shape, axes, dtype=FLOAT32):
        shape = tuple(int(d) for d in shape)
        return Act(tid, shape, _canonical_axes(shape, tuple(axes)), np.dtype(dtype))

    def view(self, act, node, new_shape, mapping):
        """``act`` seen with TF shape ``new_shape``: ``mapping`` gives the core axis of each new axis, or None for
        a new size-1 axis, placed on a free size-1 core axis (NHWC order where it fits)."""
        core = self.core_shape(act)
        used = {m for m in mapping if m is not None}
        free = [ax for ax in range(len(core)) if ax not in used and core[ax] == 1]
        if any(core[ax] != 1 for ax in range(len(core)) if ax not in used):
            raise _error(node, f"cannot view {act.shape} as {tuple(new_shape)}")
        mapping = list(mapping)
        if len(new_shape) == 4 and len(core) == 4:
            candidate = [m if m is not None else NHWC[i] for i, m in enumerate(mapping)]
            if (
                all(m is not None or NHWC[i] in free for i, m in enumerate(mapping))
                and len(set(candidate)) == 4
            ):
                return self.act(act.tid, new_shape, candidate, act.dtype)
        for i, m in enumerate(mapping):
            if m is None:
                if not free:
                    raise _error(
                        node, f"cannot view {act.shape} as {tuple(new_shape)} (rank above the core's)"
                    )
                mapping[i] = free.pop(0)
        return self.act(act.tid, new_shape, mapping, act.dtype)

    def placed_const(self, c, act, node):
        """A constant broadcast against ``act`` (TF rules), in ``act``'s core layout, as a graph constant."""
        c = np.asarray(c, np.float32)
        if c.ndim > len(act.shape):
            raise _error(node, f"a constant of shape {c.shape} broadcasts {act.shape} to a higher rank")
        cs = (1,) * (len(act.shape) - c.ndim) + c.shape
        for got, have in zip(cs, act.shape):
            if got not in (1, have):
                raise _error(
                    node, f"a constant of shape {c.shape} broadcasts activation {act.shape} to a larger shape"
                )
        core = [1] * len(self.core_shape(act))
        c = c.reshape(cs)
        order = sorted(range(len(act.shape)), key=lambda i: act.axes[i])
        arr = np.transpose(c, order)
        for i in range(len(act.shape)):
            core[act.axes[i]] = cs[i]
        return self.g.const(np.ascontiguousarray(arr.reshape(core)))

    def eltwise(self, x, act, alpha=0.0, beta=0.0):
        return self.g.eltwise(x, act=act, alpha=float(alpha), beta=float(beta))


# ---- the lowering table: op -> function(plan, node, inputs) -> outputs ---------------------------------------


def _same_padding(size, k, s):
    """TF's SAME padding of one axis (k: the dilated kernel extent): ceil(size / s) outputs, the odd pixel of
    padding at the bottom/right."""
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _conv_padding(a, h_in, w_in, top, left, bottom, right):
    """(top, left, bottom, right) of a forward convolution: its Pad folded in, plus SAME, VALID or EXPLICIT."""
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["strides"], a["dilations"]
    if a["padding"] == "SAME":
        (ph0, ph1) = _same_padding(h_in, (kh - 1) * dh + 1, sh)
        (pw0, pw1) = _same_padding(w_in, (kw - 1) * dw + 1, sw)
        return (top + ph0, left + pw0, bottom + ph1, right + pw1)
    if a["padding"] == "VALID":
        return (top, left, bottom, right)
    e = a["explicit"]
    return (top + e[0], left + e[1], bottom + e[2], right + e[3])


def _host_conv(n, x):
    """A convolution of a constant (shape-dependent) input, evaluated on the host once per plan."""
    a = n.attrs
    if x.ndim != 4 or x.dtype.kind != "f":
        raise _error(n, f"its constant input of shape {x.shape} is not a float NHWC tensor")
    _, h, w, c = x.shape
    top, left, bottom, right = a["pre_pad"]
    pad = _conv_padding(a, h + top + bottom, w + left + right, top, left, bottom, right)
    groups = c if a["kind"] == "DepthwiseConv2dNative" else c // a["weight"].shape[1]
    if a["kind"] == "DepthwiseConv2dNative" and a["in_channels"] != c:
        raise _error(n, f"a depthwise filter for {a['in_channels']} channels on a {c}-channel input")
    return host.conv2d(x, a["weight"], a["bias"], a["strides"], pad, a["dilations"], groups)


def _conv(p: _Plan, n, ins):
    a = n.attrs
    x_act = ins[a["x_index"]]
    if isinstance(x_act, np.ndarray) and a["kind"] != "Conv2DBackpropInput":
        return [_host_conv(n, x_act)]
    x = p.nhwc(x_act, n)
    _, h, w, c = x_act.shape
    kh, kw = a["kernel"]
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    top, left, bottom, right = a["pre_pad"]
    h_in, w_in = h + top + bottom, w + left + right
    ekh, ekw = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    weight = p.g.const(a["weight"])
    bias = p.g.const(a["bias"])
    if a["kind"] == "Conv2DBackpropInput":
        sizes = ins[0]
        if not isinstance(sizes, np.ndarray) or sizes.size != 4:
            raise _error(n, "its input_sizes are not known before the graph runs")
        out_n, out_h, out_w, out_c = (int(v) for v in sizes.reshape(-1))
        if out_c != a["out_channels"] or out_n != x_act.shape[0]:
            raise _error(n, f"input_sizes {sizes.tolist()} do not fit the filter and the input {x_act.shape}")
        pads = []
        for size_in, size_out, k, s, explicit in (
            (h, out_h, ekh, sh, a["explicit"] and (a["explicit"][0], a["explicit"][2])),
            (w, out_w, ekw, sw, a["explicit"] and (a["explicit"][1], a["explicit"][3])),
        ):
            if a["padding"] == "SAME":
                lo = max((size_in - 1) * s + k - size_out, 0) // 2
            elif a["padding"] == "VALID":
                lo = 0
            else:
                lo = explicit[0]
            full = (size_in - 1) * s + k
            hi = full - lo - size_out
            extra = 0
            if hi < 0:
                extra, hi = -hi, 0
            if not 0 <= extra < s:
                raise _error(
                    n, f"input_sizes {sizes.tolist()} do not fit a {size_in}-pixel input at stride {s}"
                )
            pads.append((lo, hi, extra))
        (pt, pb, eh), (pl, pr, ew) = pads
        groups = c // a["weight"].shape[0] if a["weight"].shape[0] != c else 1
        y = p.g.deconv2d(
            x,
            weight,
            bias=bias,
            stride=(sh, sw),
            padding=(pt, pl, pb, pr),
            dilation=(dh, dw),
            groups=groups,
            output_padding=(eh, ew),
        )
        return [p.act(y, (out_n, out_h, out_w, out_c), NHWC)]
    pad = _conv_padding(a, h_in, w_in, top, left, bottom, right)
    if a["kind"] == "DepthwiseConv2dNative":
        groups = c
        if a["in_channels"] != c:  # TF refuses a depthwise filter of other input channels
            raise _error(n, f"a depthwise filter for {a['in_channels']} channels on a {c}-channel input")
        if a["weight"].shape[0] % c:
            raise _error(
                n, f"a depthwise filter for {a['weight'].shape[0]} outputs does not fit {c} channels"
            )
    else:
        cin = a["weight"].shape[1]
        if c % cin:
            raise _error(n, f"a filter for {cin} input channels does not fit {c} channels")
        groups = c // cin
    y = p.g.conv2d(x, weight, bias=bias, stride=(sh, sw), padding=pad, dilation=(dh, dw), groups=groups)
    ys = p.g.shape(y)
    return [p.act(y, (ys[0], ys[2], ys[3], ys[1]), NHWC)]


UNARY_ACTS = {
    "Relu": ("relu", 0, 0),
    "Relu6": ("clip", 0, 6),
    "Elu": ("elu", 1, 0),
    "Sigmoid": ("sigmoid", 0, 0),
    "Tanh": ("tanh", 0, 0),
    "Neg": ("linear", -1, 0),
    "Square": ("square", 0, 0),
    "Sqrt": ("sqrt", 0, 0),
    "Rsqrt": ("pow", 1, -0.5),
    "Reciprocal": ("pow", 1, -1),
    "Inv": ("pow", 1, -1),
    "Exp": ("exp", 0, 0),
    "Abs": ("abs", 0, 0),
}


def _unary(p: _Plan, n, ins):
    x = ins[0]
    p.float_only(x, n)
    if n.op == "LeakyRelu":
        y = p.eltwise(x.tid, "leaky_relu", alpha=host.attr(n, "alpha", 0.2))
    else:
        act, alpha, beta = UNARY_ACTS[n.op]
        y = p.eltwise(x.tid, act, alpha, beta)
    return [p.act(y, x.shape, x.axes)]


BINOPS = {
    "Add": "add",
    "AddV2": "add",
    "BiasAdd": "add",
    "Sub": "sub",
    "Mul": "mul",
    "RealDiv": "div",
    "Div": "div",
    "Maximum": "max",
    "Minimum": "min",
    "SquaredDifference": "sub",
}
COMMUTATIVE = {"add", "mul", "max", "min"}
F32_MAX = float(np.finfo(np.float32).max)


def _broadcast_shape(n, a, b):
    rank = max(len(a), len(b))
    a, b = (1,) * (rank - len(a)) + tuple(a), (1,) * (rank - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise _error(n, f"shapes {a} and {b} do not broadcast")
        out.append(max(x, y))
    return tuple(out)


def _binary(p: _Plan, n, ins):
    op = BINOPS[n.op]  # (BiasAdd's data_format is checked at load: ATTR_CHECKS)
    a, b = ins
    if isinstance(a, Act) and isinstance(b, Act):
        y = _binary_acts(p, n, op, a, b)
    else:
        y = _binary_const(p, n, op, a, b)
    if n.op == "SquaredDifference":
        y = p.act(p.eltwise(y.tid, "square"), y.shape, y.axes)
    return [y]


def _to_rank(p, n, x: Act, rank):
    """``x`` with size-1 axes prepended up to ``rank``: TF broadcasting aligns shapes from the last axis."""
    extra = rank - len(x.shape)
    if extra <= 0:
        return x
    return p.view(x, n, (1,) * extra + x.shape, [None] * extra + list(x.axes))


def _binary_acts(p, n, op, a, b):
    p.float_only(a, n)
    p.float_only(b, n)
    rank = max(len(a.shape), len(b.shape))
    a, b = _to_rank(p, n, a, rank), _to_rank(p, n, b, rank)
    if a.axes != b.axes:  # laid out differently only on size-1 axes: no data moves
        b = _relayout_ones(b, a.axes) or b
        a = _relayout_ones(a, b.axes) or a
    if a.axes != b.axes or len(a.shape) != len(b.shape):
        raise _error(n, f"activations {a.shape} and {b.shape} are laid out differently in this graph")
    shape = _broadcast_shape(n, a.shape, b.shape)
    sa, sb = p.core_shape(a), p.core_shape(b)
    if all(y in (1, x) for x, y in zip(sa, sb)):
        return p.act(p.g.binary(a.tid, b.tid, op=op), shape, a.axes)
    if not all(x in (1, y) for x, y in zip(sa, sb)):
        raise _error(n, f"activations {a.shape} and {b.shape} broadcast against each other (not supported)")
    # a broadcasts against b: swap, then undo the order for sub and div
    if op in COMMUTATIVE:
        return p.act(p.g.binary(b.tid, a.tid, op=op), shape, a.axes)
    if op == "sub":  # a - b = -(b - a)
        t = p.g.binary(b.tid, a.tid, op="sub")
        return p.act(p.eltwise(t, "linear", -1, 0), shape, a.axes)
    inv = p.eltwise(b.tid, "pow", 1, -1)  # a / b = b^-1 * a
    return p.act(p.g.binary(inv, a.tid, op="mul"), shape, a.axes)


def _binary_const(p, n, op, a, b):
    const_first = not isinstance(a, Act)
    x, c = (b, a) if const_first else (a, b)
    p.float_only(x, n)
    c = np.asarray(c)
    if c.dtype.kind not in "fiub":
        raise _error(n, f"a constant of type {c.dtype}")
    c = c.astype(np.float32)
    if c.ndim > len(x.shape) and all(d == 1 for d in c.shape[: c.ndim - len(x.shape)]):
        x = _to_rank(p, n, x, c.ndim)  # a (1, 1, 1, c) constant on a (n, c) activation
    shape = _broadcast_shape(n, x.shape, c.shape)
    if shape != x.shape:
        raise _error(n, f"a constant of shape {c.shape} broadcasts activation {x.shape} to {shape}")
    if c.size == 1:
        v = float(c.reshape(-1)[0])
        if op == "add":
            t = p.eltwise(x.tid, "linear", 1, v)
        elif op == "sub":
            t = p.eltwise(x.tid, "linear", -1, v) if const_first else p.eltwise(x.tid, "linear", 1, -v)
        elif op == "mul":
            t = p.eltwise(x.tid, "linear", v, 0)
        elif op == "div":
            # c / x = c * x^-1; x / c as x * (1 / c): within an ulp of TF's quotient, and an eltwise the core
            # fuses into the producer (a binary with a broadcast constant runs as a separate pass)
            t = (
                p.eltwise(x.tid, "pow", v, -1)
                if const_first
                else p.eltwise(x.tid, "linear", 1 / np.float32(v), 0)
            )
        elif op == "max":
            t = p.eltwise(x.tid, "clip", v, F32_MAX)
        else:
            t = p.eltwise(x.tid, "clip", -F32_MAX, v)
        return p.act(t, shape, x.axes)
    k = p.placed_const(c, x, n)
    if not const_first or op in COMMUTATIVE:
        return p.act(p.g.binary(x.tid, k, op=op), shape, x.axes)
    if op == "sub":  # c - x = -x + c
        return p.act(p.g.binary(p.eltwise(x.tid, "linear", -1, 0), k, op="add"), shape, x.axes)
    return p.act(p.g.binary(p.eltwise(x.tid, "pow", 1, -1), k, op="mul"), shape, x.axes)


def _batch_norm(p: _Plan, n, ins):
    x = p.nhwc(ins[0], n)
    if bool(host.attr(n, "is_training", True)):
        raise _error(n, "attribute is_training=True (batch statistics at inference) is not supported")
    params = ins[1:5]
    if len(params) != 4 or not all(isinstance(v, np.ndarray) for v in params):
        raise _error(n, "its scale, offset, mean and variance are not constants")
    gamma, beta, mean, var = (v.reshape(-1).astype(np.float32) for v in params)
    scale = gamma / np.sqrt(var + np.float32(host.attr(n, "epsilon", 1e-4)))
    shift = beta - mean * scale
    c = ins[0].shape[3]
    if scale.size != c:
        raise _error(n, f"{scale.size} parameters for {c} channels")
    t = p.g.binary(x, p.g.const(scale.reshape(1, c, 1, 1)), op="mul")
    t = p.g.binary(t, p.g.const(shift.reshape(1, c, 1, 1)), op="add")
    return [p.act(t, ins[0].shape, NHWC)]


def _softmax(p: _Plan, n, ins):
    x = ins[0]
    p.float_only(x, n)
    return [p.act(p.g.softmax(x.tid, axis=x.axes[-1]), x.shape, x.axes)]


def _host_int_list(n, v, what):
    if not isinstance(v, np.ndarray) or v.dtype.kind not in "iu":
        raise _error(n, f"its {what} is not known before the graph runs")
    return [int(i) for i in v.reshape(-1)]


def _axis(n, v, rank):
    return host.normalize_axis(n, _host_int_list(n, v, "axis")[0], rank)


def _concat(p: _Plan, n, ins):
    *values, axis = ins
    if any(not isinstance(v, Act) for v in values):
        raise _error(n, "concatenating constants with activations is not supported")
    # the input with the most data-carrying axes sets the layout; the others may differ on size-1 axes only
    ref = max(values, key=lambda v: sum(d != 1 for d in v.shape))
    values = [_relayout_ones(v, ref.axes) or v for v in values]
    first = values[0]
    a = _axis(n, axis, len(first.shape))
    for v in values[1:]:
        if v.axes != first.axes or v.dtype != first.dtype or len(v.shape) != len(first.shape):
            raise _error(n, f"inputs {first.shape} and {v.shape} are laid out or typed differently")
    shape = list(first.shape)
    shape[a] = sum(v.shape[a] for v in values)
    tids = [v.tid for v in values]
    while len(tids) > 16:  # the core concatenates up to 16 at once
        tids = [p.g.concat(tids[i : i + 16], axis=first.axes[a]) for i in range(0, len(tids), 16)]
    y = tids[0] if len(tids) == 1 else p.g.concat(tids, axis=first.axes[a])
    return [p.act(y, shape, first.axes, first.dtype)]


def _slice_act(p: _Plan, x: Act, begins: dict, ends: dict):
    """x sliced on TF axes (begin/end per TF axis)."""
    core = p.core_shape(x)
    b, e = [None] * len(core), [None] * len(core)
    changed = False
    for i, ax in enumerate(x.axes):
        if i in begins and (begins[i] != 0 or ends[i] != x.shape[i]):
            b[ax], e[ax] = begins[i], ends[i]
            changed = True
    return p.g.slice(x.tid, begin=b, end=e) if changed else x.tid


def _strided_slice(p: _Plan, n, ins):
    x = ins[0]
    if not isinstance(x, Act):
        raise _error(n, "slicing a constant by an activation")
    begin, end, strides = (_host_int_list(n, v, "slice") for v in ins[1:4])
    spec = host.StridedSliceSpec(n, x.shape, begin, end, strides)
    begins, ends, mapping, shape = {}, {}, [], []
    for i, (lo, hi, step, _) in enumerate(spec.dims):
        if step != 1:
            raise _error(n, f"stride {step} on an activation is not supported")
        begins[i], ends[i] = lo, max(lo, hi)
    t = _slice_act(p, x, begins, ends)
    for a in spec.out_layout:
        if a is None:
            mapping.append(None)
            shape.append(1)
        else:
            mapping.append(x.axes[a])
            shape.append(ends[a] - begins[a])
    return [p.view(p.act(t, x.shape, x.axes, x.dtype), n, shape, mapping)]


def _slice(p: _Plan, n, ins):
    x = ins[0]
    begin, size = (_host_int_list(n, v, "slice") for v in ins[1:3])
    if len(begin) != len(x.shape) or len(size) != len(x.shape):
        raise _error(n, "begin/size do not fit the input's rank")
    begins, ends = {}, {}
    for i, (b, s, d) in enumerate(zip(begin, size, x.shape)):
        e = d if s == -1 else b + s
        if not 0 <= b <= e <= d:
            raise _error(n, f"[{b}, {e}) is out of range {d}")
        begins[i], ends[i] = b, e
    t = _slice_act(p, x, begins, ends)
    return [p.act(t, [ends[i] - begins[i] for i in range(len(x.shape))], x.axes, x.dtype)]


def _split_common(p, n, x, a, sizes):
    outs, start = [], 0
    for s in sizes:
        shape = list(x.shape)
        shape[a] = s
        t = _slice_act(p, x, {a: start}, {a: start + s})
        outs.append(p.act(t, shape, x.axes, x.dtype))
        start += s
    return outs


def _split(p: _Plan, n, ins):
    axis, x = ins
    a = _axis(n, axis, len(x.shape))
    k = int(host.attr(n, "num_split", 1))
    if k <= 0 or x.shape[a] % k:
        raise _error(n, f"{x.shape[a]} does not split into {k}")
    return _split_common(p, n, x, a, [x.shape[a] // k] * k)


def _split_v(p: _Plan, n, ins):
    x, sizes, axis = ins
    a = _axis(n, axis, len(x.shape))
    return _split_common(p, n, x, a, host.split_sizes(n, _host_int_list(n, sizes, "sizes"), x.shape[a]))


def _unpack(p: _Plan, n, ins):
    x = ins[0]
    a = host.normalize_axis(n, int(host.attr(n, "axis", 0)), len(x.shape))
    parts = _split_common(p, n, x, a, [1] * x.shape[a])
    mapping = [ax for i, ax in enumerate(x.axes) if i != a]
    shape = [d for i, d in enumerate(x.shape) if i != a]
    return [p.view(v, n, shape, mapping) for v in parts]


def _reshape_to(p: _Plan, n, x: Act, shape):
    """A reshape that only inserts or removes size-1 axes keeps every core axis: a view."""
    old = [(i, d) for i, d in enumerate(x.shape) if d != 1]
    new = [(i, d) for i, d in enumerate(shape) if d != 1]
    if [d for _, d in old] != [d for _, d in new]:
        raise _error(
            n,
            f"reshaping an activation from {x.shape} to {tuple(shape)} moves data between axes "
            "(not supported)",
        )
    mapping = [None] * len(shape)
    for (oi, _), (ni, _) in zip(old, new):
        mapping[ni] = x.axes[oi]
    return p.view(x, n, shape, mapping)


def _reshape(p: _Plan, n, ins):
    x, shape = ins
    return [_reshape_to(p, n, x, host.reshape_target(n, x.shape, _host_int_list(n, shape, "shape")))]


def _squeeze(p: _Plan, n, ins):
    x = ins[0]
    return [_reshape_to(p, n, x, host.squeeze_target(n, x.shape))]


def _expand_dims(p: _Plan, n, ins):
    x, axis = ins
    a = _axis(n, axis, len(x.shape) + 1)
    mapping = list(x.axes)
    mapping.insert(a, None)
    shape = list(x.shape)
    shape.insert(a, 1)
    return [p.view(x, n, shape, mapping)]


def _transpose(p: _Plan, n, ins):
    x, perm = ins
    perm = _host_int_list(n, perm, "permutation")
    if sorted(perm) != list(range(len(x.shape))):
        raise _error(n, f"{perm} is not a permutation of {len(x.shape)} axes")
    return [p.act(x.tid, [x.shape[i] for i in perm], [x.axes[i] for i in perm], x.dtype)]


def _pack(p: _Plan, n, ins):
    if any(not isinstance(v, Act) for v in ins):
        raise _error(n, "packing constants with activations is not supported")
    first = ins[0]
    a = host.normalize_axis(n, int(host.attr(n, "axis", 0)), len(first.shape) + 1)
    views = []
    for v in ins:
        v = _relayout_ones(v, first.axes) or v
        if v.shape != first.shape or v.axes != first.axes:
            raise _error(n, f"inputs {first.shape} and {v.shape} differ")
        mapping = list(v.axes)
        mapping.insert(a, None)
        shape = list(v.shape)
        shape.insert(a, 1)
        views.append(p.view(v, n, shape, mapping))
    return _concat(p, n, [*views, np.asarray(a, np.int32)])


def _tile(p: _Plan, n, ins):
    x, multiples = ins
    m = _host_int_list(n, multiples, "multiples")
    if len(m) != len(x.shape) or min(m, default=1) < 1:
        raise _error(n, f"multiples {m} do not fit rank {len(x.shape)}")
    if (
        int(np.prod(x.shape, dtype=np.float64) * np.prod(m, dtype=np.float64)) > MAX_TILE_ELEMENTS
        or max(m) > 4096
    ):
        raise _error(n, f"tiling {x.shape} by {m} is too large")
    for i, k in enumerate(m):
        if k > 1:
            x = _concat(p, n, [x] * k + [np.asarray(i, np.int32)])[0]
    return [x]


def _pad(p: _Plan, n, ins):
    x = p.nhwc(ins[0], n)
    raw = ins[1]
    if not isinstance(raw, np.ndarray):
        raise _error(n, "its paddings are not known before the graph runs")
    pads = host.paddings_of(n, raw, 4)
    if pads[0] != (0, 0) or pads[3] != (0, 0):
        raise _error(n, f"padding {pads} of the batch or channel axis is not supported")
    (t, b), (l_, r) = pads[1], pads[2]
    if n.op == "MirrorPad":
        mode = _require(n, "mode", {"REFLECT", "SYMMETRIC"}).lower()
        y = p.g.pad(x, padding=(t, l_, b, r), mode=mode)
    else:
        value = 0.0
        if n.op == "PadV2":
            if not isinstance(ins[2], np.ndarray) or ins[2].size != 1:
                raise _error(n, "its constant_values is not a known scalar")
            value = float(ins[2].reshape(-1)[0])
        y = p.g.pad(x, padding=(t, l_, b, r), value=value)
    s = ins[0].shape
    return [p.act(y, (s[0], s[1] + t + b, s[2] + l_ + r, s[3]), NHWC)]


def _pool(p: _Plan, n, ins):
    x = p.nhwc(ins[0], n)
    ksize = list(host.attr(n, "ksize", []))
    strides = list(host.attr(n, "strides", []))
    if (
        len(ksize) != 4
        or len(strides) != 4
        or ksize[0] != 1
        or ksize[3] != 1
        or strides[0] != 1
        or strides[3] != 1
    ):
        raise _error(n, f"ksize {ksize} / strides {strides} are not spatial")
    padding = _require(n, "padding", {"SAME", "VALID"})
    _, h, w, c = ins[0].shape
    kh, kw = ksize[1:3]
    sh, sw = strides[1:3]
    same = padding == "SAME"
    pads = [_same_padding(size, k, s) if same else (0, 0) for size, k, s in ((h, kh, sh), (w, kw, sw))]
    kind = "max" if n.op == "MaxPool" else "avg_exclude_pad"  # TF's SAME average excludes the padding
    y = p.g.pool2d(
        x,
        kind=kind,
        kernel=(kh, kw),
        stride=(sh, sw),
        padding=(pads[0][0], pads[1][0], pads[0][1], pads[1][1]),
    )
    ys = p.g.shape(y)
    return [p.act(y, (ys[0], ys[2], ys[3], ys[1]), NHWC)]


def _reduce(p: _Plan, n, ins):
    x_act, axes = ins
    x = p.nhwc(x_act, n)
    rank = 4
    reduced = sorted({host.normalize_axis(n, a, rank) for a in _host_int_list(n, axes, "axes")})
    keep = bool(host.attr(n, "keep_dims", False))
    nb, h, w, c = x_act.shape
    if 0 in reduced and nb != 1:
        raise _error(n, "a reduction over the batch axis is not supported")
    y = x
    spatial = (1 in reduced and h > 1) or (2 in reduced and w > 1)
    if spatial:
        kh, kw = (h if 1 in reduced else 1), (w if 2 in reduced else 1)
        if n.op in ("Mean", "Sum"):
            y = (
                p.g.global_avg_pool(y)
                if (kh, kw) == (h, w)
                else p.g.pool2d(y, kind="avg_include_pad", kernel=(kh, kw), stride=(kh, kw))
            )
            if n.op == "Sum":
                y = p.eltwise(y, "linear", kh * kw, 0)
        elif n.op == "Max":
            y = p.g.pool2d(y, kind="max", kernel=(kh, kw), stride=(kh, kw))
        elif n.op == "Min":
            y = p.eltwise(
                p.g.pool2d(p.eltwise(y, "linear", -1, 0), kind="max", kernel=(kh, kw), stride=(kh, kw)),
                "linear",
                -1,
                0,
            )
        else:
            raise _error(n, "this reduction over spatial axes is not supported")
    if 3 in reduced and c > 1:
        if n.op not in ("Mean", "Sum"):
            raise _error(n, f"{n.op} over the channel axis is not supported")
        k = np.full((1, c, 1, 1), 1.0 / c if n.op == "Mean" else 1.0, np.float32)
        y = p.g.conv2d(y, p.g.const(k))
    out_shape = [1 if i in reduced else d for i, d in enumerate(x_act.shape)]
    full = p.act(y, out_shape, NHWC)
    if keep:
        return [full]
    mapping = [ax for i, ax in enumerate(NHWC) if i not in reduced]
    return [p.view(full, n, [d for i, d in enumerate(out_shape) if i not in reduced], mapping)]


def _resize(p: _Plan, n, ins):
    x = p.nhwc(ins[0], n)
    size = _host_int_list(n, ins[1], "size")
    if len(size) != 2 or min(size) <= 0:
        raise _error(n, f"size {size} is not two positive integers")
    align = bool(host.attr(n, "align_corners", False))
    half = bool(host.attr(n, "half_pixel_centers", False))
    if align and half:
        raise _error(n, "align_corners and half_pixel_centers are both set")
    if n.op == "ResizeBilinear":
        mode = "bilinear_align_corners" if align else "bilinear" if half else "bilinear_asymmetric"
    else:
        mode = "nearest_align_corners" if align else "nearest_half_pixel" if half else "nearest"
    y = p.g.resize(x, mode=mode, size=tuple(size))
    s = ins[0].shape
    return [p.act(y, (s[0], size[0], size[1], s[3]), NHWC)]


def _matmul(p: _Plan, n, ins):
    a, b = ins
    if not isinstance(a, Act) or not isinstance(b, np.ndarray):
        raise _error(n, "only an activation times a constant matrix is supported")
    if host.attr(n, "transpose_a", False):
        raise _error(n, "attribute transpose_a=True is not supported")
    w = b.astype(np.float32)
    if w.ndim != 2:
        raise _error(n, f"a weight of shape {w.shape}")
    if not host.attr(n, "transpose_b", False):
        w = w.T
    p.float_only(a, n)
    core = p.core_shape(a)
    if len(a.shape) != 2 or a.axes[0] != 0 or a.axes[1] != 1 or any(d != 1 for d in core[2:]):
        raise _error(n, f"its input {a.shape} is not a matrix in this graph")
    if w.shape[1] != a.shape[1]:
        raise _error(n, f"a {w.shape[1]}-feature weight for {a.shape[1]} features")
    y = p.g.linear(a.tid, p.g.const(np.ascontiguousarray(w)))
    return [p.act(y, (a.shape[0], w.shape[0]), (0, 1))]


def _cast(p: _Plan, n, ins):
    x = ins[0]
    dst = numpy_dtype(host.attr(n, "DstT"))
    if dst.kind == "f":
        if x.dtype.kind != "f":
            raise _error(n, f"a cast of a {x.dtype} activation back to {dst} is not supported")
        return [x]
    if x.dtype.kind != "f" and x.dtype != dst:
        raise _error(n, f"a cast from {x.dtype} to {dst} is not supported")
    return [p.act(x.tid, x.shape, x.axes, dst)]


def _shape(p: _Plan, n, ins):
    x = ins[0]
    out = (
        np.dtype(numpy_dtype(host.attr(n, "out_type"))) if host.attr(n, "out_type") is not None else np.int32
    )
    if n.op == "Shape":
        return [np.asarray(x.shape, out)]
    if n.op == "Size":
        return [np.asarray(int(np.prod(x.shape)), out)]
    return [np.asarray(len(x.shape), np.int32)]


LOWER = {
    "_Conv": _conv,
    **dict.fromkeys(UNARY_ACTS, _unary),
    "LeakyRelu": _unary,
    **dict.fromkeys(BINOPS, _binary),
    **dict.fromkeys(BATCH_NORM_OPS, _batch_norm),
    "Softmax": _softmax,
    "ConcatV2": _concat,
    "StridedSlice": _strided_slice,
    "Slice": _slice,
    "Split": _split,
    "SplitV": _split_v,
    "Unpack": _unpack,
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "ExpandDims": _expand_dims,
    "Transpose": _transpose,
    "Pack": _pack,
    "Tile": _tile,
    "Pad": _pad,
    "PadV2": _pad,
    "MirrorPad": _pad,
    "MaxPool": _pool,
    "AvgPool": _pool,
    "Mean": _reduce,
    "Sum": _reduce,
    "Max": _reduce,
    "Min": _reduce,
    "ResizeBilinear": _resize,
    "ResizeNearestNeighbor": _resize,
    "MatMul": _matmul,
    "Cast": _cast,
    "Shape": _shape,
    "Size": _shape,
    "Rank": _shape,
}


def _check_data_format(n):
    _require(n, "data_format", {"NHWC"}, b"NHWC")


def _check_pool(n):
    _check_data_format(n)
    _require(n, "padding", {"SAME", "VALID"})


ATTR_CHECKS = {
    "BiasAdd": _check_data_format,
    "MaxPool": _check_pool,
    "AvgPool": _check_pool,
    **dict.fromkeys(BATCH_NORM_OPS, _check_data_format),
    "MirrorPad": lambda n: _require(n, "mode", {"REFLECT", "SYMMETRIC"}),
}

__all__ = ["TfGraph", "LOWER"]
