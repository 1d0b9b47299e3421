"""Pipeline base: preprocess -> forward -> postprocess per input, lists and generators of inputs, as ModelScope."""

import types

from ..runtime import resolve_memory_limit, resolve_threads


class Pipeline:
    """Subclasses implement, for one input, as every pipeline does:

    - ``preprocess(input)``: decodes the input (``msvision.io``) and prepares the network's input arrays, in
      NumPy / OpenCV exactly as ModelScope's preprocessing computes them;
    - ``forward(inputs)``: one call of the model (cascades such as MTCNN are the documented exception);
    - ``postprocess(outputs)``: decoding, NMS (in C), scaling, and ModelScope's output dict.

    ``threads`` are the CPU threads of each network call; ``memory_limit`` the activation bytes one call may
    need (see ``msvision.runtime``).
    """

    def __init__(self, model_dir: str, config: dict, threads=None, memory_limit=None):
        self.model_dir = model_dir
        self.config = config
        self.threads = resolve_threads(threads)
        self.memory_limit = resolve_memory_limit(memory_limit)

    def __call__(self, input, *args, **kwargs):
        kwargs.pop("batch_size", None)  # accepted for compatibility; inputs run one at a time
        if args:
            raise TypeError(
                f"{type(self).__name__} takes one input (or a list of inputs), got extra arguments"
            )
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {sorted(kwargs)}")
        if isinstance(input, list):
            return [self._process_single(x) for x in input]
        if isinstance(input, types.GeneratorType):
            return (self._process_single(x) for x in input)
        return self._process_single(input)

    def _process_single(self, input):
        return self.postprocess(self.forward(self.preprocess(input)))

    def preprocess(self, input):
        raise NotImplementedError

    def forward(self, inputs):
        raise NotImplementedError

    def postprocess(self, outputs):
        raise NotImplementedError
