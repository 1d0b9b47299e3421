"""Pipeline base: preprocess -> forward -> postprocess per input, lists and generators of inputs, as ModelScope.

A pipeline pickles by recipe (task, model directory, options), not by its weights: unpickling builds it again, or
takes it from this process's cache (``msvision.pipelines.cache``), so a long-lived worker loads each model once.
"""

from __future__ import annotations

import os
import types
from typing import Any

from ..runtime import check_precision, resolve_memory_limit, resolve_threads


class Pipeline:
    """Subclasses implement, for one input, as every pipeline does:

    - ``preprocess(input)``: decodes the input (``msvision.io``) and prepares the network's input arrays, in
      NumPy / OpenCV exactly as ModelScope's preprocessing computes them;
    - ``forward(inputs)``: one call of the model (cascades such as MTCNN are the documented exception);
    - ``postprocess(outputs)``: decoding, NMS (in C), scaling, and ModelScope's output dict.

    ``threads`` are the CPU threads of each network call; ``memory_limit`` the activation bytes one call may
    need; ``precision`` that of the convolutions, one of the class's ``precisions`` (see ``msvision.runtime``).
    """

    precisions = ("fp32",)  # a pipeline whose models meet their bf16 accuracy gate adds "bf16"

    def __init__(
        self,
        model_dir: str,
        config: dict,
        threads: int | None = None,
        memory_limit: int | None = None,
        precision: str = "fp32",
    ):
        self.model_dir = model_dir
        self.config = config
        self.task = config.get("task")
        self.precision = check_precision(
            precision, self.precisions, f"the {self.task} pipeline {type(self).__name__}"
        )
        self.threads = resolve_threads(threads)
        self.memory_limit = resolve_memory_limit(memory_limit)
        self._created_in = os.getpid()
        # what pickling records (pipeline() completes it with the pipeline type and the options): the arguments
        # as given, so that a default such as threads=None is resolved again where the pipeline is unpickled
        self.recipe = {
            "task": self.task,
            "model": model_dir,
            "threads": threads,
            "memory_limit": memory_limit,
            "precision": precision,
        }

    def __call__(self, input: Any, *args, **kwargs) -> Any:
        kwargs.pop("batch_size", None)  # accepted for compatibility; inputs run one at a time
        if args:
            raise TypeError(
                f"{type(self).__name__} takes one input (or a list of inputs), got extra arguments"
            )
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {sorted(kwargs)}")
        if os.getpid() != self._created_in:
            raise RuntimeError(
                f"{self!r} was created in process {self._created_in} and called in process {os.getpid()}, "
                "a fork() of it: GNU OpenMP does not survive fork(). Create the pipeline in the worker, or "
                "pickle it to workers started with the 'spawn' method"
            )
        if isinstance(input, list):
            return [self._process_single(x) for x in input]
        if isinstance(input, types.GeneratorType):
            return (self._process_single(x) for x in input)
        return self._process_single(input)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(task={self.task!r}, model_dir={self.model_dir!r}, threads={self.threads})"
        )

    def __reduce__(self):
        from .cache import restore_pipeline

        return restore_pipeline, (dict(self.recipe),)

    def _process_single(self, input):
        return self.postprocess(self.forward(self.preprocess(input)))

    def preprocess(self, input):
        raise NotImplementedError

    def forward(self, inputs):
        raise NotImplementedError

    def postprocess(self, outputs):
        raise NotImplementedError
