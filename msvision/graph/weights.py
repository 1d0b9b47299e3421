"""A checkpoint's named arrays, taken by a network builder with the shapes it expects (strict loading)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InvalidModelError


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


class Weights:
    """The arrays of one checkpoint (``source`` names the file in every error).

    ``take(name, shape)`` returns an array and records that the network uses it; a missing name or another shape
    is an :class:`~msvision.errors.InvalidModelError` naming the weight. After building, ``check_all_used()``
    refuses a checkpoint with weights the network never took (a checkpoint for another network, or a layer
    msvision would silently drop): the strict rule of torch's ``load_state_dict``, applied even where
    ModelScope loads with ``strict=False``.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], source: str, network: str) -> None:
        self._arrays = dict(arrays)
        self._used: set[str] = set()
        self.source = source
        self.network = network

    def error(self, message: str) -> InvalidModelError:
        return InvalidModelError(f"{self.source}: {message}")

    def has(self, name: str) -> bool:
        return name in self._arrays

    def take(self, name: str, shape: Sequence[int] | None = None) -> np.ndarray:
        """The weight ``name`` as a C-contiguous float32 array of ``shape`` (entries < 0 match anything)."""
        if name not in self._arrays:
            raise self.error(f"missing weight '{name}'")
        self._used.add(name)
        value = np.asarray(self._arrays[name])
        if shape is not None and (
            value.ndim != len(shape)
            or any(want >= 0 and want != got for want, got in zip(shape, value.shape))
        ):
            raise self.error(
                f"weight '{name}' has shape {_shape_text(value.shape)}, expected {_shape_text(shape)}"
            )
        if value.dtype.kind not in "fiub":
            raise self.error(f"weight '{name}' has dtype {value.dtype}, not a number")
        return np.ascontiguousarray(value, dtype=np.float32)

    def skip(self, name: str, shape: Sequence[int] | None = None) -> None:
        """A weight the checkpoint carries but the network does not use (ModelScope's module defines it and
        never calls it, or a counter such as BatchNorm's ``num_batches_tracked``): its shape is checked when
        present, and it counts as taken."""
        if name in self._arrays:
            self.take(name, shape)

    def unused(self) -> list[str]:
        return [name for name in self._arrays if name not in self._used]

    def check_all_used(self) -> None:
        unused = self.unused()
        if unused:
            shown = ", ".join(f"'{n}'" for n in unused[:3]) + (", ..." if len(unused) > 3 else "")
            raise self.error(
                f"{len(unused)} weight(s) in the checkpoint do not belong to this {self.network} network: {shown}"
            )
