"""The one way a network is loaded: model directory -> weights -> graph (built in Python on the C core) -> run.

A model file subclasses :class:`Model` and states, in this order: its settings, the weights it takes by name with
their expected shapes, and the graph (``build``). Loading errors are wrapped here, once: whatever goes wrong
while reading or building becomes an :class:`~msvision.errors.InvalidModelError` naming the weight file.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from ..checkpoint import CheckpointError, load_npy, load_torch, state_dict_from
from ..errors import GraphError, InvalidModelError, ModelNotFoundError
from ..graph import Builder, Graph, Session, Weights
from ..runtime import available_cpus, check_precision


def weight_file(model_dir: str, *parts: str) -> str:
    path = os.path.join(model_dir, *parts)
    if not os.path.isfile(path):
        raise ModelNotFoundError(f"{model_dir}: missing weight file {os.path.join(*parts)}")
    return path


def torch_state_dict(path: str, param_key: str | None) -> dict[str, np.ndarray]:
    """A torch checkpoint's state dict, selected as ModelScope's loaders do (see ``state_dict_from``)."""
    try:
        checkpoint = load_torch(path)
    except OSError as e:
        raise InvalidModelError(f"cannot read {path}: {e}") from e
    try:
        return state_dict_from(checkpoint, param_key=param_key)
    except CheckpointError as e:  # names the problem; the file is named here
        raise type(e)(f"{path}: {e}") from None


def npy_weights(path: str) -> dict[str, np.ndarray]:
    """A ``.npy`` file holding a pickled dict of numeric arrays (MTCNN's weight files)."""
    try:
        obj = load_npy(path)
    except OSError as e:
        raise InvalidModelError(f"cannot read {path}: {e}") from e
    if not isinstance(obj, dict):
        raise InvalidModelError(f"{path}: expected a pickled dict of arrays, got {type(obj).__name__}")
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
            raise InvalidModelError(f"{path}: entry {name!r} is not a numeric array")
    return obj


class Model:
    """A network of a model directory, built once and run many times.

    Subclasses set ``network`` (its name in messages) and ``layout`` ("nchw" or "nhwc": the layout of the arrays
    ``run`` takes and returns), and implement ``read_weights(model_dir, config) -> (arrays, weight file path)``
    and ``build(b: Builder) -> [output tensors]``.

    ``precision`` is that of the convolutions: "fp32" (the default, faithful to ModelScope) or "bf16" (see
    ``msvision.runtime.PRECISIONS``); a model class lists in ``precisions`` the ones that meet its accuracy gate
    (its tests measure it), and any other is refused at load.

    ``run(*inputs)`` may be called from several Python threads at once: each call takes an idle session (a new
    one, sharing the packed weights, when all are busy), so calls run concurrently on ``threads`` threads each,
    up to one session per CPU (at least two); further callers wait for a session to come free.
    """

    network = "network"
    layout = "nchw"
    precisions = ("fp32",)

    def __init__(
        self,
        model_dir: str,
        config: dict | None,
        threads: int,
        *,
        max_plans: int = 8,
        memory_limit: int = 0,
        precision: str = "fp32",
    ) -> None:
        check_precision(precision, self.precisions, self.network)
        self.precision = precision
        self.model_dir = model_dir
        self.config = config or {}
        self.threads = threads
        arrays, self.weights_path = self.read_weights(model_dir, self.config)
        weights = Weights(arrays, self.weights_path, self.network)
        del arrays
        graph = Graph()
        try:
            outputs = self.build(Builder(graph, weights))
            weights.check_all_used()
            for t in outputs:
                graph.output(t)
            graph.finalize()
        except GraphError as e:  # a weight the core finds inconsistent with the network
            raise InvalidModelError(f"{self.weights_path}: {e}") from None
        self.graph = graph
        self._options = dict(
            threads=threads,
            layout=self.layout,
            max_plans=max_plans,
            memory_limit=memory_limit,
            precision=precision,
        )
        self._sessions = [Session(graph, **self._options)]
        self._idle = list(self._sessions)
        self._max_sessions = max(
            2, available_cpus()
        )  # more concurrent runs than CPUs only oversubscribe them
        self._changed = threading.Condition()

    def read_weights(self, model_dir: str, config: dict) -> tuple[dict[str, np.ndarray], str]:
        raise NotImplementedError

    def build(self, b: Builder) -> list:
        raise NotImplementedError

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        with self._changed:
            while not self._idle and len(self._sessions) >= self._max_sessions:
                self._changed.wait()
            if self._idle:
                session = self._idle.pop()
            else:
                session = Session(self.graph, share_weights_with=self._sessions[0], **self._options)
                self._sessions.append(session)
        try:
            return session.run(list(inputs))
        finally:
            with self._changed:
                self._idle.append(session)
                self._changed.notify()

    @property
    def primitive_count(self) -> int:
        """oneDNN primitives created for this network so far (planning happens once per input shape)."""
        return sum(s.primitive_count for s in self._sessions)

    @property
    def arena_bytes(self) -> int:
        """Activation memory held by this network's sessions."""
        return sum(s.arena_bytes for s in self._sessions)

    def steps(self) -> list[str]:
        """The plan run last (by the first session): one line per step, 'op: implementation [layouts]'."""
        return self._sessions[0].steps()
