"""Scale-out on existing engines: one model per worker process, each worker's threads = its CPU budget.

Nothing here starts processes itself. :class:`Predictor` is a small picklable callable holding only a pipeline's
recipe (task, model, threads, options); in whatever process calls it, it takes the pipeline from that process's
cache (``msvision.pipelines.cache.cached_pipeline``), so a long-lived worker loads each model once, however many
tasks carry the predictor. Workers must be *spawned*, not forked: GNU OpenMP does not survive ``fork()``, and a
pipeline called in a forked child of the process that created it raises RuntimeError (Dask's and Ray's worker
processes are started fresh; a ``multiprocessing`` pool needs ``get_context("spawn")``).

Records are ``msvision.results.to_record(result, path=...)``, the objects of ``msvision run``'s JSON Lines.

Sequential (the reference, and small jobs)::

    from msvision.distributed import records
    for record in records(paths, "face-detection", model=ULFD_DIR, threads=2):
        ...

Dask (``pip install "msvision[dask]"``): a bag of records, each partition run by one worker with its cached
model. Use one thread per worker process and as many workers as CPUs (Dask's nanny also sets
``OMP_NUM_THREADS=1`` in its workers); Dask starts its worker processes with ``spawn`` by default
(``distributed.worker.multiprocessing-method``), which is what msvision needs::

    from dask.distributed import Client, LocalCluster
    from msvision.distributed import dask_records
    from msvision.results import dumps

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster):
        bag = dask_records(paths, "face-detection", model=ULFD_DIR, threads=1, partition_size=8)
        bag.map(dumps).to_textfiles("out/results.*.jsonl")  # one JSON Lines file per partition
        # or, in input order into one file:
        # with open("results.jsonl", "w") as f:
        #     f.writelines(dumps(r) + "\\n" for r in bag.compute())

For an image task (denoising, matting) pass ``output_dir=``: each worker writes ``<output_dir>/<stem>.png`` and
the record names it (``"output"``); inputs must then have distinct file name stems.

Ray Data (``pip install "msvision[ray]"``): :class:`RayPredictor` is the callable class of ``map_batches``; it
takes a ``path`` column (file paths) and/or a ``bytes`` column (as ``read_binary_files(include_paths=True)``
gives, for files the workers cannot open by path) and returns ``path`` and ``record`` (the JSON line). On a
machine with N CPUs give Ray N CPUs and let the pool use fewer than all of them: a pool of actors that takes
every CPU leaves none for Ray Data's reading and writing tasks and can hang. On 2 CPUs::

    import ray
    from msvision.distributed import RayPredictor

    ray.init(num_cpus=2)
    ds = ray.data.from_items([{"path": str(p)} for p in paths])
    # or: ds = ray.data.read_binary_files(folder, include_paths=True)   (columns bytes, path)
    out = ds.map_batches(
        RayPredictor,
        fn_constructor_kwargs={"task": "face-detection", "model": ULFD_DIR, "threads": 1},
        concurrency=1, num_cpus=1, batch_size=8, batch_format="numpy",
    )   # Ray >= 2.51 prefers compute=ray.data.ActorPoolStrategy(size=1) to concurrency=1 (same pool)
    lines = [row["record"] for row in out.iter_rows()]   # or out.write_json(...), out.write_parquet(...)

``ray_dataset(paths, task, ...)`` builds that pipeline. Ray Data does not keep the input order unless
``DataContext.get_current().execution_options.preserve_order = True``; every record carries its ``path``.

Neither Dask nor Ray is imported by ``import msvision.distributed``; the functions that need one import it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .io import write_image
from .results import check_distinct_outputs, dumps, to_record

__all__ = ["Predictor", "RayPredictor", "dask_records", "ray_dataset", "records"]

DEFAULT_PARTITION_SIZE = 8
DEFAULT_RAY_BATCH_SIZE = 8


def _import_extra(module: str, extra: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f'{what} needs {extra.capitalize()}: pip install "msvision[{extra}]" ({e})') from e


class Predictor:
    """A picklable ``pipeline(task, model, threads=..., memory_limit=..., **options)`` built where it is called.

    ``predictor(item)`` runs one input (a path, encoded bytes, an array or a PIL image) and returns the result
    dict; ``predictor.record(path)`` returns its JSON record. With ``output_dir``, an image result
    (``output_img``) is written as ``<output_dir>/<input file stem>.png`` and the record names it (``"output"``).
    Pickling carries the recipe only; the pipeline comes from the calling process's cache, so each worker
    process loads the model once.
    """

    def __init__(
        self,
        task: str,
        model: str | os.PathLike | None = None,
        *,
        threads: int | None = 1,
        memory_limit: int | None = None,
        output_dir: str | os.PathLike | None = None,
        **options: Any,
    ):
        if model is not None and isinstance(model, os.PathLike):
            model = os.fspath(model)
        self.recipe = dict(task=task, model=model, threads=threads, memory_limit=memory_limit, **options)
        self.output_dir = None if output_dir is None else os.fspath(output_dir)

    @property
    def pipeline(self):
        """This process's pipeline for the recipe (built on first use, then from the cache)."""
        from .pipelines.cache import cached_pipeline

        return cached_pipeline(**self.recipe)

    def __call__(self, item: Any) -> dict:
        return self.pipeline(item)

    def record(self, path: str | os.PathLike | None, data: Any = None) -> dict:
        """The JSON record of the input at ``path`` (or of ``data``, e.g. its encoded bytes, named ``path``)."""
        return self._record(self.pipeline, path, data)

    def records(self, paths: Iterable) -> list[dict]:
        """The records of ``paths``, in order, with one cache look-up for all of them."""
        pipe = self.pipeline
        return [self._record(pipe, path) for path in paths]

    def _record(self, pipe, path, data=None) -> dict:
        from .outputs import OutputKeys

        if path is None and data is None:
            raise ValueError("record() needs a path or data")
        result = pipe(data if data is not None else path)
        fields = {} if path is None else {"path": str(path)}
        image = result.get(OutputKeys.OUTPUT_IMG) if isinstance(result, dict) else None
        if image is not None and self.output_dir is not None:
            if path is None:
                raise ValueError("an image result written to output_dir needs the input's path to name it")
            fields["output"] = write_image(_output_path(self.output_dir, path), image)
        return to_record(result, **fields)

    def __getstate__(self):
        return {"recipe": self.recipe, "output_dir": self.output_dir}

    def __setstate__(self, state):
        self.recipe = dict(state["recipe"])
        self.output_dir = state["output_dir"]

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.recipe.items() if k != "task")
        extra = f", output_dir={self.output_dir!r}" if self.output_dir is not None else ""
        return f"Predictor({self.recipe['task']!r}, {options}{extra})"


def _output_path(output_dir, path) -> Path:
    return Path(output_dir) / (Path(str(path)).stem + ".png")


def _check_output_names(paths: list, output_dir) -> None:
    if output_dir is not None:
        check_distinct_outputs((path, _output_path(output_dir, path)) for path in paths)


def records(
    paths: Iterable, task: str, model: str | os.PathLike | None = None, threads: int | None = None, **options
) -> Iterator[dict]:
    """The records of ``paths`` one after another in this process (``threads``: None = every usable CPU)."""
    paths = list(paths)
    _check_output_names(paths, options.get("output_dir"))
    predictor = Predictor(task, model, threads=threads, **options)
    pipe = predictor.pipeline
    for path in paths:
        yield predictor._record(pipe, path)


def _predict_partition(paths: list, predictor: Predictor) -> list[dict]:
    return predictor.records(paths)


def dask_records(
    paths: Iterable,
    task: str,
    model: str | os.PathLike | None = None,
    *,
    threads: int | None = 1,
    partition_size: int = DEFAULT_PARTITION_SIZE,
    **options,
):
    """A ``dask.bag.Bag`` of the records of ``paths`` (in input order), ``partition_size`` paths per task.

    Each worker builds the pipeline once (its cache) with ``threads`` threads: give it the worker's CPU budget
    (``threads_per_worker=1`` and ``threads=1``). ``options`` go to ``pipeline()`` (``memory_limit``, ...) and
    ``output_dir`` to :class:`Predictor`. Nothing runs until the bag is computed.
    """
    db = _import_extra("dask.bag", "dask", "dask_records()")
    paths = [str(p) if isinstance(p, os.PathLike) else p for p in paths]
    _check_output_names(paths, options.get("output_dir"))
    predictor = Predictor(task, model, threads=threads, **options)
    return db.from_sequence(paths, partition_size=partition_size).map_partitions(
        _predict_partition, predictor
    )


class RayPredictor:
    """The callable class of Ray Data's ``map_batches`` (``batch_format='numpy'``): one pipeline per actor.

    A batch has a ``path`` column (strings) and/or a ``bytes`` column (encoded images, as
    ``ray.data.read_binary_files(..., include_paths=True)`` gives); with both, the bytes are run and the path
    names the record. The result has ``path`` (when given) and ``record``, the record's JSON line.
    """

    def __init__(self, task: str, model: str | os.PathLike | None = None, threads: int | None = 1, **options):
        self.predictor = Predictor(task, model, threads=threads, **options)
        # load the model when the actor starts, not on its first batch
        self.pipeline = self.predictor.pipeline

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        paths = batch.get("path")
        data = batch.get("bytes")
        if paths is None and data is None:
            raise KeyError(f"a batch needs a 'path' or 'bytes' column, got columns {sorted(batch)}")
        n = len(paths) if paths is not None else len(data)
        names = [None if paths is None else str(paths[i]) for i in range(n)]
        lines = []
        for i in range(n):
            item = None if data is None else _as_bytes(data[i])
            lines.append(dumps(self.predictor._record(self.pipeline, names[i], item)))
        out = {"record": np.array(lines, dtype=object)}
        if paths is not None:
            out = {"path": np.array(names, dtype=object), **out}
        return out


def _as_bytes(value) -> bytes:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tobytes()
    return bytes(value)


def ray_dataset(
    paths: Iterable,
    task: str,
    model: str | os.PathLike | None = None,
    *,
    threads: int | None = 1,
    concurrency: int = 1,
    num_cpus: float = 1,
    batch_size: int = DEFAULT_RAY_BATCH_SIZE,
    **options,
):
    """A Ray Dataset with columns ``path`` and ``record`` (JSON lines) for ``paths``: ``concurrency`` actors of
    ``num_cpus`` CPUs, each with one pipeline of ``threads`` threads (call ``ray.init`` first, or Ray starts a
    local instance with every CPU). Lazy: iterate, ``take_all()`` or write it."""
    rd = _import_extra("ray.data", "ray", "ray_dataset()")
    paths = [str(p) for p in paths]
    _check_output_names(paths, options.get("output_dir"))
    return rd.from_items([{"path": p} for p in paths]).map_batches(
        RayPredictor,
        fn_constructor_kwargs=dict(task=task, model=model, threads=threads, **options),
        compute=rd.ActorPoolStrategy(size=concurrency),  # = concurrency=N, deprecated since Ray 2.51
        num_cpus=num_cpus,
        batch_size=batch_size,
        batch_format="numpy",
    )
