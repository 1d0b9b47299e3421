"""This process's cache of pipelines built from recipes: unpickling a pipeline, and ``cached_pipeline()``.

A worker of Dask, Ray or a ``multiprocessing`` pool receives pipelines by pickle (``Pipeline.__reduce__``: the
task, model directory and options). Unpickling looks the recipe up here first, so a long-lived worker loads each
model once however many tasks carry it. The cache holds the most recently used ``MSVISION_PIPELINE_CACHE``
pipelines (default 4; 0 disables it); recipes with unhashable options (a callable detector) are built each time.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

CACHE_SIZE_VARIABLE = "MSVISION_PIPELINE_CACHE"
DEFAULT_CACHE_SIZE = 4

_pipelines: OrderedDict = OrderedDict()
_lock = threading.Lock()  # held while a model loads, so concurrent unpicklers of one recipe load it once
stats = {"hits": 0, "misses": 0}


def cache_size() -> int:
    raw = os.environ.get(CACHE_SIZE_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_CACHE_SIZE
    if not raw.isdigit():
        raise ValueError(f"{CACHE_SIZE_VARIABLE} must be a number of pipelines, got {raw!r}")
    return int(raw)


def _key(recipe: dict):
    from .base import Pipeline

    items = []
    for name in sorted(recipe):
        value = recipe[name]
        if isinstance(value, Pipeline):
            value = ("pipeline", _key(value.recipe))
        try:
            hash(value)
        except TypeError:
            return None
        items.append((name, value))
    return tuple(items)


def cached_pipeline(task=None, model=None, **options):
    """``pipeline(task, model, **options)``, reused when this process already built the same recipe."""
    from .builder import pipeline

    recipe = dict(task=task, model=model, **options)
    key, size = _key(recipe), cache_size()
    if key is None or size == 0:
        return pipeline(**recipe)
    with _lock:
        found = _pipelines.get(key)
        if found is not None:
            _pipelines.move_to_end(key)
            stats["hits"] += 1
            return found
        stats["misses"] += 1
        built = pipeline(**recipe)
        _pipelines[key] = built
        while len(_pipelines) > size:
            _pipelines.popitem(last=False)
        return built


def restore_pipeline(recipe: dict):
    """The unpickler of ``Pipeline`` (see ``Pipeline.__reduce__``)."""
    return cached_pipeline(**recipe)


def clear() -> None:
    with _lock:
        _pipelines.clear()
        stats.update(hits=0, misses=0)
