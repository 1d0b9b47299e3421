"""msvision.distributed: Predictor (picklable recipe), the sequential reference, a Dask LocalCluster and Ray Data.

The cluster tests run the real ULFD face detector over the 14 shared face photos. The sequential reference is
computed in this process first, so the workers are children of a process that has run networks: they must be
spawned (a forked one would be refused by the pipeline and the C core).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import msvision
from msvision.distributed import Predictor, RayPredictor, dask_records, ray_dataset, records
from msvision.pipelines import cache
from msvision.results import dumps, to_record

ULFD = "assets/modelscope/damo/cv_manual_face-detection_ulfd"
SAMPLE = Path(msvision.__file__).resolve().parent / "data" / "noisy_sample.png"


@pytest.fixture(scope="module")
def ulfd(shared_dir) -> str:
    return str(shared_dir / ULFD)


@pytest.fixture(scope="module")
def faces(shared_dir) -> list[str]:
    paths = sorted(str(p) for p in (shared_dir / "assets" / "images" / "faces").glob("*.jpg"))
    assert len(paths) == 14
    return paths


@pytest.fixture(scope="module")
def reference(faces, ulfd) -> list[dict]:
    """The sequential records, one process, one thread: what every scale-out must reproduce."""
    return list(records(faces, "face-detection", model=ulfd, threads=1))


def test_import_loads_neither_dask_nor_ray():
    code = (
        "import sys, msvision, msvision.distributed\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'ray'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_missing_extra_names_the_pip_install(monkeypatch, faces):
    for name in ("dask", "dask.bag", "ray", "ray.data"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of it now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "msvision\[dask\]"'):
        dask_records(faces, "face-detection")
    with pytest.raises(ImportError, match=r'pip install "msvision\[ray\]"'):
        ray_dataset(faces, "face-detection")


def test_records_are_the_pipeline_results(faces, ulfd, reference):
    pipe = msvision.pipeline("face-detection", model=ulfd, threads=1)
    assert reference == [to_record(pipe(p), path=p) for p in faces]
    assert [r["path"] for r in reference] == faces
    assert sum(len(r["scores"]) for r in reference) > 14  # real faces were found
    # the inputs a predictor takes besides paths: encoded bytes and BGR arrays give the same result
    predictor = Predictor("face-detection", ulfd)
    data = Path(faces[0]).read_bytes()
    assert predictor.record(faces[0], data=data) == reference[0]
    assert to_record(predictor(cv2.imread(faces[0])), path=faces[0]) == reference[0]


def test_predictor_pickles_as_its_recipe(faces, ulfd, reference):
    predictor = Predictor("face-detection", Path(ulfd), threads=1)
    assert predictor.record(faces[0]) == reference[0]  # used: still nothing but the recipe to pickle
    data = pickle.dumps(predictor)
    assert len(data) < 1000 and b"pytorch_model" not in data
    clone = pickle.loads(data)
    assert (
        vars(clone)
        == vars(predictor)
        == {
            "recipe": {"task": "face-detection", "model": ulfd, "threads": 1, "memory_limit": None},
            "output_dir": None,
        }
    )
    hits = cache.stats["hits"]
    assert clone.pipeline is predictor.pipeline  # this process's cached pipeline
    assert cache.stats["hits"] == hits + 2
    assert [clone.record(p) for p in faces[:3]] == reference[:3]


def test_predictor_writes_image_results_as_png(tmp_path):
    crop = cv2.imread(str(SAMPLE))[:96, :128]
    source = tmp_path / "in" / "crop.jpg"  # the written file takes the input's stem and .png
    source.parent.mkdir()
    cv2.imwrite(str(source), crop)
    out = tmp_path / "out"
    predictor = pickle.loads(pickle.dumps(Predictor("image-denoising", threads=1, output_dir=out)))
    record = predictor.record(source)
    assert record == {"path": str(source), "output": str(out / "crop.png")}
    expected = msvision.pipeline("image-denoising", threads=1)(str(source))["output_img"]
    written = cv2.imread(record["output"], cv2.IMREAD_UNCHANGED)
    assert written.shape == (96, 128, 3) and np.array_equal(written, expected)
    assert sorted(p.name for p in out.iterdir()) == ["crop.png"]  # no temporary file left
    # without output_dir the image is not written and the record has no "output"
    assert Predictor("image-denoising", threads=1).record(source) == {"path": str(source)}
    # two inputs that would be written to one file are refused before anything runs
    other = tmp_path / "elsewhere" / "crop.png"
    with pytest.raises(ValueError, match="would both be written"):
        list(records([source, other], "image-denoising", output_dir=out))


def test_dask_local_cluster_gives_the_sequential_records(faces, ulfd, reference, tmp_path):
    import dask
    from dask.distributed import Client, LocalCluster  # also registers the distributed.* config defaults

    # the workers are spawned (Dask's default), as they must be: this process has run networks already
    assert dask.config.get("distributed.worker.multiprocessing-method") == "spawn"

    def worker_cache_stats():
        from msvision.pipelines import cache

        return dict(cache.stats)

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client:
        bag = dask_records(faces, "face-detection", model=ulfd, threads=1, partition_size=3)
        assert bag.npartitions == 5
        assert bag.compute() == reference  # same records, input order

        # one cache look-up per partition; each worker that ran any loaded the model once and reused it
        stats = client.run(worker_cache_stats)
        assert len(stats) == 2
        ran = {w: s for w, s in stats.items() if s["hits"] + s["misses"]}
        assert ran and all(s["misses"] == 1 for s in ran.values()), stats
        assert sum(s["hits"] + s["misses"] for s in stats.values()) == 5, stats
        assert sum(s["hits"] for s in stats.values()) >= 3, stats  # 5 partitions, at most 2 loads
        pids = client.run(os.getpid)
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()

        # the documented JSON Lines recipe: one file per partition, concatenated in order
        bag.map(dumps).to_textfiles(str(tmp_path / "part.*.jsonl"))
        files = sorted(tmp_path.glob("part.*.jsonl"), key=lambda p: int(p.name.split(".")[1]))
        lines = [line for f in files for line in f.read_text(encoding="utf-8").splitlines()]
    assert lines == [dumps(r) for r in reference]
    assert [json.loads(line) for line in lines] == reference


def test_ray_data_gives_the_sequential_records(faces, ulfd, reference):
    import ray

    by_path = {r["path"]: r for r in reference}
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        # paths: workers open the files
        rows = ray_dataset(faces, "face-detection", model=ulfd, threads=1, batch_size=4).take_all()
        assert sorted(r["path"] for r in rows) == faces  # each once (Ray Data may reorder)
        assert all(json.loads(r["record"]) == by_path[r["path"]] for r in rows)
        assert all(r["record"] == dumps(by_path[r["path"]]) for r in rows)

        # the recipe with bytes read by Ray: one actor of one CPU of the two, leaving one for the reads
        ds = ray.data.read_binary_files(faces, include_paths=True)
        rows = ds.map_batches(
            RayPredictor,
            fn_constructor_kwargs={"task": "face-detection", "model": ulfd, "threads": 1},
            compute=ray.data.ActorPoolStrategy(size=1),  # concurrency=1 before Ray 2.51
            num_cpus=1,
            batch_size=4,
            batch_format="numpy",
        ).take_all()
        assert sorted(r["path"] for r in rows) == faces
        assert all(json.loads(r["record"]) == by_path[r["path"]] for r in rows)
    finally:
        ray.shutdown()


def test_ray_predictor_batches_without_ray(faces, ulfd, reference):
    """The batch contract itself: a path column, a bytes column, or both (bytes run, path names)."""
    actor = RayPredictor("face-detection", ulfd, threads=1)
    paths = np.array(faces[:3], dtype=object)
    data = np.array([Path(p).read_bytes() for p in faces[:3]], dtype=object)
    expected = [dumps(r) for r in reference[:3]]
    out = actor({"path": paths})
    assert list(out["path"]) == faces[:3] and list(out["record"]) == expected
    out = actor({"path": paths, "bytes": data})
    assert list(out["path"]) == faces[:3] and list(out["record"]) == expected
    out = actor({"bytes": data})
    assert set(out) == {"record"}
    assert [json.loads(line) for line in out["record"]] == [
        {k: v for k, v in r.items() if k != "path"} for r in reference[:3]
    ]
    with pytest.raises(KeyError, match="'path' or 'bytes'"):
        actor({"other": paths})
