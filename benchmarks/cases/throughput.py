"""Throughput (images/s) of face detection (ULFD, real weights) over a folder of 200 photos: the CLI in one
process with 1 thread, Dask with 2 worker processes x 1 thread (msvision.distributed.dask_records), and the CLI
in one process with 2 threads. Each configuration runs in its own process; the time is the wall clock of the
whole job after start-up (the CLI's includes loading the model; Dask's cluster start is reported apart).

    python3 benchmarks/run.py throughput [--images 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
import common  # noqa: E402

SHARED = os.environ.get("MSVISION_SHARED") or os.path.join(common.REPO_ROOT, "..", "shared")
ULFD = os.path.join(SHARED, "assets", "modelscope", "damo", "cv_manual_face-detection_ulfd")
FACES = os.path.join(SHARED, "assets", "images", "faces")

DASK_JOB = """
import json, sys, time
from dask.distributed import Client, LocalCluster
from msvision.distributed import dask_records
folder, model, out = sys.argv[1:4]
import pathlib
paths = sorted(str(p) for p in pathlib.Path(folder).glob("*.jpg"))
t0 = time.perf_counter()
with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \\
        Client(cluster) as client:
    started = time.perf_counter()
    records = dask_records(paths, "face-detection", model=model, threads=1, partition_size=10).compute()
    done = time.perf_counter()
with open(out, "w") as f:
    f.writelines(json.dumps(r) + "\\n" for r in records)
print(json.dumps({"start_s": started - t0, "run_s": done - started, "images": len(records)}))
"""


def make_folder(directory: str, count: int) -> str:
    photos = sorted(f for f in os.listdir(FACES) if f.endswith(".jpg"))
    for i in range(count):
        shutil.copy(
            os.path.join(FACES, photos[i % len(photos)]),
            os.path.join(directory, f"{i:03d}_{photos[i % len(photos)]}"),
        )
    return directory


def cli(folder: str, threads: int, out: str) -> float:
    env = {**os.environ, **common.thread_env(threads)}
    cmd = [sys.executable, "-m", "msvision", "run", "face-detection", folder, "--model", ULFD]
    t0 = time.perf_counter()
    subprocess.run([*cmd, "--threads", str(threads), "--jsonl", out, "-q"], check=True, env=env)
    return time.perf_counter() - t0


def main(argv) -> None:
    parser = argparse.ArgumentParser(prog="throughput")
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        os.mkdir(os.path.join(tmp, "photos"))
        folder = make_folder(os.path.join(tmp, "photos"), args.images)
        rows = []
        seconds = cli(folder, 1, os.path.join(tmp, "one.jsonl"))
        rows.append(("CLI, 1 process x 1 thread", seconds, ""))
        env = {**os.environ, **common.thread_env(1)}
        r = subprocess.run(
            [sys.executable, "-c", DASK_JOB, folder, ULFD, os.path.join(tmp, "dask.jsonl")],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
        dask = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(
            ("Dask, 2 workers x 1 thread", dask["run_s"], f"(cluster start {dask['start_s']:.1f} s apart)")
        )
        seconds = cli(folder, 2, os.path.join(tmp, "two.jsonl"))
        rows.append(("CLI, 1 process x 2 threads", seconds, ""))
        same = [
            open(os.path.join(tmp, f)).read().count("\n") for f in ("one.jsonl", "dask.jsonl", "two.jsonl")
        ]
    base = rows[0][1]
    print(f"face detection (ULFD) over {args.images} photos ({os.cpu_count()} CPUs); records per run: {same}")
    print(f"{'configuration':32s} {'seconds':>8s} {'images/s':>9s} {'vs 1x1':>7s}")
    for name, seconds, note in rows:
        print(f"{name:32s} {seconds:8.2f} {args.images / seconds:9.1f} {base / seconds:6.2f}x {note}")
