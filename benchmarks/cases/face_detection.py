"""Face detection: ModelScope's pipeline vs msvision's on the same model directory and photo, same threads.

Each engine runs in its own process (``--engine``), so timings and peak RSS are its own. Models: the real ULFD
and MTCNN weights in ../shared/assets; RetinaFace-R50 (no released weights here) with seeded random weights from
ModelScope's own class, calibrated on the astronaut photo as tests/models/test_retinaface.py builds them, written
once to benchmarks/out/retinaface_random (MogFace is the mogface case).

    python3 benchmarks/run.py face_detection --threads 2 [--models ULFD,MTCNN,RetinaFace]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
import common  # noqa: E402

SHARED = os.environ.get("MSVISION_SHARED") or os.path.join(common.REPO_ROOT, "..", "shared")
MODELS = {
    "ULFD": os.path.join(SHARED, "assets", "modelscope", "damo", "cv_manual_face-detection_ulfd"),
    "MTCNN": os.path.join(SHARED, "assets", "modelscope", "damo", "cv_manual_face-detection_mtcnn"),
}
PHOTOS = ["office1.jpg", "ulfd_11.jpg"]


def retinaface_dir() -> str:
    """benchmarks/out/retinaface_random: ModelScope's RetinaFace, seed 0, calibrated on the astronaut photo."""

    def build(dest):
        import numpy as np
        from PIL import Image

        model_dirs = common.use_test_fixtures()
        rgb = np.asarray(Image.open(common.skimage_data_path("astronaut.png")).convert("RGB"), np.float32)
        mean = np.array([104.0, 117.0, 123.0], np.float32)
        model_dirs.make_retinaface_dir(dest, seed=0, calibrate_on=rgb - mean)

    recipe = {
        "builder": "tests/support/model_dirs.make_retinaface_dir",
        "seed": 0,
        "calibrated_on": "astronaut",
    }
    return common.cached_model_dir("retinaface_random", recipe, build)


def run_engine(engine: str, model_dir: str, photo: str, threads: int, repeats: int) -> dict:
    load = common.load_modelscope_pipeline if engine == "modelscope" else common.load_msvision_pipeline
    pipe, _ = load("face-detection", model_dir, threads)
    result = {}

    def call():
        result["out"] = pipe(photo)

    times = common.time_calls(call, repeats, warmup=1)
    out = result["out"]
    return {
        **common.summarize(times),
        "faces": len(out["scores"]),
        "boxes": [list(map(float, b)) for b in out["boxes"]],
        "peak_rss_mib": common.peak_rss_mib(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--engine", choices=["modelscope", "msvision"])
    parser.add_argument("--model-dir")
    parser.add_argument("--photo")
    parser.add_argument("--models", default="ULFD,MTCNN,RetinaFace", help="comma-separated subset")
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args(argv)
    if args.engine:
        print(json.dumps(run_engine(args.engine, args.model_dir, args.photo, args.threads, args.repeats)))
        return 0

    rows, cold = [], []
    models = dict(MODELS)
    wanted = args.models.split(",")
    if "RetinaFace" in wanted:
        models["RetinaFace (random weights)"] = retinaface_dir()
    for name, model_dir in models.items():
        if name.split(" ")[0] not in wanted:
            continue
        for photo_name in PHOTOS:
            photo = os.path.join(SHARED, "assets", "images", "faces", photo_name)
            res = {}
            for engine in ("modelscope", "msvision"):
                cmd = [
                    sys.executable,
                    __file__,
                    "--engine",
                    engine,
                    "--model-dir",
                    model_dir,
                    "--photo",
                    photo,
                ]
                cmd += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
                env = {**os.environ, **common.thread_env(args.threads)}
                run = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                res[engine] = json.loads(run.stdout.strip().splitlines()[-1])
            if photo_name == PHOTOS[0]:
                for engine in ("msvision", "modelscope"):
                    c = common.cold_start(engine, "face-detection", model_dir, photo, args.threads)
                    cold.append(
                        f"- Cold start of {engine}'s {name} pipeline on {photo_name}: {common.fmt_cold(c)}"
                    )
            ms, mv = res["modelscope"], res["msvision"]
            diff = max(
                (max(abs(a - b) for a, b in zip(ba, bb)) for ba, bb in zip(ms["boxes"], mv["boxes"])),
                default=0.0,
            )
            rows.append(
                f"| {name} | {photo_name} | {ms['faces']} / {mv['faces']} | {diff:.2g} px | "
                f"{ms['median'] * 1e3:.1f} | {mv['median'] * 1e3:.1f} | {ms['median'] / mv['median']:.2f}x | "
                f"{ms['peak_rss_mib']:.0f} / {mv['peak_rss_mib']:.0f} |"
            )
    machine = common.machine_info()
    lines = [
        "",
        f"## Face detection ({args.models}) — {common.now_utc()}",
        "",
        f"Command: `python3 benchmarks/run.py face_detection --threads {args.threads} --repeats {args.repeats} "
        f"--models {args.models}`  ",
        f"Machine: {machine['cpu_model']}, {machine['cpus']} CPUs; threads {args.threads}; load average at end "
        f"{common.load_average()}; each engine in its own process, median of {args.repeats} calls after 1 warm-up.",
        "",
        "| model | photo | faces ModelScope / msvision | max box diff | ModelScope ms | msvision ms | speed-up |"
        " peak RSS MiB (MS / msv) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        *cold,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.no_write:
        return 0
    with open(os.path.join(common.BENCH_DIR, "RESULTS.md"), "a") as f:
        f.write(text + "\n")  # a blank line before the next section
    return 0


if __name__ == "__main__":
    sys.exit(main())
