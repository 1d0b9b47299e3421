#!/usr/bin/env python3
"""GPEN portrait enhancement: ModelScope's image-portrait-enhancement pipeline vs msvision's, same model directory,
photo and threads, each engine in its own process.

    python3 benchmarks/run.py gpen --threads 2 [--repeats 3] [--size 512]

The photo is scikit-image's astronaut (512 x 512: one face). The model directory (benchmarks/out/gpen_random,
~880 MB, built once) holds random weights from ModelScope's own classes as tests/support/model_dirs.make_gpen_dir
builds them, RetinaFace calibrated to find one face on the photo and EQFace steered to keep it, so every stage runs:
RealESRNet x2 on the whole photo (about 70% of the FLOPs), RetinaFace-R50 on the 2x image, EQFace twice and
GPEN-512 once. Timed: the whole call, and inside it the super-resolution, detection, GPEN and quality networks
(ModelScope: the modules' forward; msvision: each network's run).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
import common  # noqa: E402

STAGES = ("sr", "detector", "gpen", "quality")


def photo_path(size: int) -> str:
    from PIL import Image

    path = os.path.join(common.OUT_DIR, f"gpen_astronaut_{size}.png")
    if not os.path.isfile(path):
        os.makedirs(common.OUT_DIR, exist_ok=True)
        img = Image.open(common.skimage_data_path("astronaut.png")).convert("RGB")
        img.resize((size, size), Image.BICUBIC).save(path)
    return path


def model_dir(photo: str) -> str:
    def build(dest):
        import numpy as np
        from PIL import Image

        rgb = np.asarray(Image.open(photo).convert("RGB"))
        common.use_test_fixtures().make_gpen_dir(dest, calibrate_on=rgb, passing=(1, 0, 0))

    recipe = {
        "builder": "tests/support/model_dirs.make_gpen_dir",
        "photo": os.path.basename(photo),
        "passing": 1,
    }
    return common.cached_model_dir("gpen_random", recipe, build)


def _time_stages(modules: dict, e2e_call, a):
    """Wrap each stage's callable with a timer, then time the whole call; per-call stage sums."""
    accs = {name: [0.0] for name in modules}
    for name, (obj, attr) in modules.items():
        setattr(obj, attr, common.timed(getattr(obj, attr), accs[name]))
    per_call = {name: [] for name in modules}
    times = []
    for i in range(a.warmup + a.repeats):
        for acc in accs.values():
            acc[0] = 0.0
        t0 = time.perf_counter()
        e2e_call()
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            times.append(dt)
            for name, acc in accs.items():
                per_call[name].append(acc[0])
    return {"e2e": common.summarize(times), **{n: common.summarize(v) for n, v in per_call.items()}}


def engine_modelscope(a) -> dict:
    common.use_torchvision_stub()
    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(a.threads)
    pipe = common.use_test_oracle().modelscope_pipeline("image-portrait-enhancement", a.model_dir)
    load_s = time.perf_counter() - t0
    modules = {
        "sr": (pipe.sr_model, "forward"),
        "detector": (pipe.face_detector.net, "forward"),
        "gpen": (pipe.face_enhancer, "forward"),
        "quality": (pipe.eqface.BACKBONE, "forward"),
    }
    return {"load_s": load_s, **_time_stages(modules, lambda: pipe(a.image), a)}


def engine_msvision(a) -> dict:
    common.use_repo_msvision()
    t0 = time.perf_counter()
    import msvision

    pipe = msvision.pipeline("image-portrait-enhancement", model=a.model_dir, threads=a.threads)
    load_s = time.perf_counter() - t0
    modules = {
        "sr": (pipe.sr, "run"),
        "detector": (pipe.detector.net, "run"),
        "gpen": (pipe.enhancer, "run"),
        "quality": (pipe.quality, "run"),
    }
    return {"load_s": load_s, **_time_stages(modules, lambda: pipe(a.image), a)}


ENGINE_FUNCS = {"modelscope": engine_modelscope, "msvision": engine_msvision}


def orchestrate(a) -> None:
    t_start = time.perf_counter()
    work = os.path.join(common.OUT_DIR, "gpen")
    os.makedirs(work, exist_ok=True)
    photo = photo_path(a.size)
    mdir = model_dir(photo_path(512))
    res = {}
    for eng in ("msvision", "modelscope"):
        args = ["--engine", eng, "--threads", str(a.threads), "--model-dir", mdir, "--image", photo]
        args += ["--repeats", str(a.repeats), "--warmup", str(a.warmup)]
        res[eng] = common.run_engine_process(
            __file__, args, os.path.join(work, f"{eng}.json"), a.threads, a.timeout, eng
        )
    ms, ours = res["modelscope"], res["msvision"]
    lines = [
        "| Engine | Whole call (s) | RealESRNet x2 (s) | RetinaFace (s) | GPEN-512 (s) | EQFace (s) | Peak RSS (MiB) "
        "| Load (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in (("ModelScope (torch)", ms), ("msvision", ours)):
        cells = " | ".join(common.fmt_s(r[s]["median"]) for s in ("e2e", *STAGES))
        lines.append(f"| {name} | {cells} | {r['peak_rss_mib']:.0f} | {r['load_s']:.2f} |")
    ratios = " | ".join(f"{ms[s]['median'] / ours[s]['median']:.2f}×" for s in ("e2e", *STAGES))
    lines.append(f"| ModelScope ÷ msvision | {ratios} | | |")
    m = common.machine_info()
    vers = common.package_versions(["torch", "modelscope", "numpy", "opencv-python-headless"])
    header = [
        f"## GPEN portrait enhancement — {common.now_utc()}",
        "",
        f"- Command: `python3 {' '.join(shlex.quote(x) for x in sys.argv)}`",
        f"- Machine: {m['cpu_model']} ({m['cpus']} CPUs); load average at end {common.load_average()}",
        f"- Threads: {a.threads} for both; {a.warmup} warm-up + {a.repeats} timed calls (medians), each engine in "
        "its own process",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- Photo: scikit-image astronaut at {a.size}x{a.size}, one face found and enhanced; random weights "
        "(make_gpen_dir); stage columns are the time inside each network per call (EQFace: both calls)",
        f"- Whole run: {time.perf_counter() - t_start:.0f} s wall",
    ]
    report = "\n".join(header) + "\n\n" + "\n".join(lines) + "\n"
    print(report)
    if not a.no_write:
        with open(a.results, "a") as f:
            f.write(report + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=512, help="the photo's side")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--results", default=os.path.join(common.BENCH_DIR, "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--timeout", type=int, default=3600)
    ap.add_argument("--engine", choices=sorted(ENGINE_FUNCS), help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.engine:
        common.engine_main(ENGINE_FUNCS, a)
    else:
        orchestrate(a)


if __name__ == "__main__":
    main()
