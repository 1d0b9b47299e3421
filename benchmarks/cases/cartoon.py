#!/usr/bin/env python3
"""DCT-Net portrait cartoon: ModelScope's ImageCartoonPipeline (TensorFlow) vs msvision's.

    python3 benchmarks/run.py cartoon --threads 2 [--repeats 5]

Two measurements, each engine in its own subprocess with the same threads (TensorFlow: TF_NUM_INTRAOP_THREADS,
OMP_NUM_THREADS and the session's intra-op threads; msvision ``threads=``):

- the background generator ``cartoon_bg.pb`` alone on a 720 x 1280 BGR image (a TF session on the frozen graph
  vs msvision's imported graph), with the network's direct-convolution FLOPs per second (Winograd needs fewer
  multiplies, so this can exceed the machine's fp32 peak);
- the whole ``pipeline(path)`` call on a 1280 x 960 portrait (``faces/ulfd_5.jpg`` upscaled; ModelScope works at
  960 x 720 inside) with its face found: background, face analyser, head generator, blending, resize back.

The background graph alone is also run by OpenVINO's CPU plugin, which reads ``cartoon_bg.pb`` itself (fp32, and
its default precision: bf16 on this CPU), on the same image.

The hub is unreachable, so the model directory is the tests' (tests/support/cartoon_graphs.py): the generators
frozen from ModelScope's own network.py and loss.py with seeded weights, the face analyser's stand-in graphs with
a prior placing the photo's face. The outputs are compared.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
import common  # noqa: E402

TASK = "image-portrait-stylization"
FP32_PEAK = 230e9  # this machine's fp32 peak on 2 cores (README)
BG_SIZE = (720, 1280)  # h, w
PORTRAIT = (1280, 960)  # w, h


def _cartoon_graphs():
    common.use_test_fixtures()
    from support import cartoon_graphs

    return cartoon_graphs


def _bg_input():
    return np.random.default_rng(0).integers(0, 256, (*BG_SIZE, 3)).astype(np.uint8)


def engine_modelscope(a) -> dict:
    import tensorflow as tf

    t0 = time.perf_counter()
    cartoon_graphs = _cartoon_graphs()
    from support.tf_graphs import modelscope_tf_pipeline

    pipe = modelscope_tf_pipeline(TASK, a.model_dir)
    load_s = time.perf_counter() - t0
    acc = [0.0]
    e2e, _ = common.timed_e2e(lambda: pipe(a.image), acc, a.repeats, a.warmup)
    np.save(a.json_out + ".npy", pipe(a.image)["output_img"])
    del cartoon_graphs
    # the background graph alone, in a session of its own with the same threads
    graph_def = tf.compat.v1.GraphDef.FromString(
        open(os.path.join(a.model_dir, "cartoon_bg.pb"), "rb").read()
    )
    graph = tf.compat.v1.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=a.threads, inter_op_parallelism_threads=1)
    sess = tf.compat.v1.Session(graph=graph, config=config)
    x = _bg_input()
    bg = common.summarize(
        common.time_calls(lambda: sess.run("output_image:0", {"input_image:0": x}), a.repeats, a.warmup)
    )
    np.save(a.json_out + ".bg.npy", sess.run("output_image:0", {"input_image:0": x}))
    return {"load_s": load_s, "e2e": e2e, "bg": bg, "version": tf.__version__}


def engine_msvision(a) -> dict:
    pipe, load_s = common.load_msvision_pipeline(TASK, a.model_dir, a.threads)
    acc = [0.0]
    e2e, _ = common.timed_e2e(lambda: pipe(a.image), acc, a.repeats, a.warmup)
    np.save(a.json_out + ".npy", pipe(a.image)["output_img"])
    x = _bg_input()
    bg = common.summarize(common.time_calls(lambda: pipe.background.run(x), a.repeats, a.warmup))
    np.save(a.json_out + ".bg.npy", pipe.background.run(x))
    return {
        "load_s": load_s,
        "e2e": e2e,
        "bg": bg,
        "ops": dict(pipe.background.graph.op_histogram().most_common()),
        "steps": len(pipe.background.steps()),
    }


def engine_openvino(a) -> dict:
    """OpenVINO (``a.engine``: common.TF_GRAPH_PEERS) on the background graph and image msvision's bg run gets."""
    x = _bg_input()
    path = os.path.join(a.model_dir, "cartoon_bg.pb")
    peer = common.TfGraphPeer(a.engine, path, "input_image:0", "output_image:0", x.shape, a.threads)
    bg = common.summarize(common.time_calls(lambda: peer.run(x), a.repeats, a.warmup))
    np.save(a.json_out + ".bg.npy", peer.run(x))
    return {"load_s": peer.load_s, "bg": bg, "peer": peer.info}


ENGINE_FUNCS = {
    "modelscope": engine_modelscope,
    "msvision": engine_msvision,
    **{peer: engine_openvino for peer in common.TF_GRAPH_PEERS},
}


def generator_conv_flops(h, w, channel=32) -> int:
    """Conv FLOPs (2 x MACs) of network.py's unet_generator at h x w (num_blocks 4), guided filter excluded."""
    layers = [  # (in, out, k, scale of the output relative to the input image)
        (3, channel, 7, 1), (channel, channel, 3, 2), (channel, 2 * channel, 3, 2), (2 * channel, 2 * channel, 3, 4),
        (2 * channel, 4 * channel, 3, 4), *[(4 * channel, 4 * channel, 3, 4)] * 8, (4 * channel, 2 * channel, 3, 4),
        (2 * channel, 2 * channel, 3, 2), (2 * channel, channel, 3, 2), (channel, channel, 3, 1), (channel, 3, 7, 1),
    ]  # fmt: skip
    return sum(2 * cin * cout * k * k * (h // s) * (w // s) for cin, cout, k, s in layers)


def orchestrate(a) -> None:
    t_start = time.perf_counter()
    work = os.path.join(common.OUT_DIR, "cartoon")
    os.makedirs(work, exist_ok=True)
    cartoon_graphs = _cartoon_graphs()
    from PIL import Image

    source = cartoon_graphs.photo_path("faces/ulfd_5.jpg")
    image = os.path.join(work, f"portrait_{PORTRAIT[0]}x{PORTRAIT[1]}.png")
    src = Image.open(source).convert("RGB")
    src.resize(PORTRAIT, Image.BICUBIC).save(image)
    sx, sy = PORTRAIT[0] / src.width, PORTRAIT[1] / src.height
    faces = [
        (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
        for x1, y1, x2, y2 in cartoon_graphs.FACE_BOXES["faces/ulfd_5.jpg"]
    ]
    recipe = {"graphs": "cartoon_graphs", "seed": 0, "faces": [list(map(float, f)) for f in faces], "v": 1}

    def build(d):
        cartoon_graphs.make_cartoon_dir(d, cartoon_graphs.face_prior_for(image, faces))

    model_dir = common.cached_model_dir("cartoon_compound", recipe, build, weights="cartoon_bg.pb")
    res = {}
    for eng in ("msvision", "modelscope", *common.TF_GRAPH_PEERS):
        args = ["--engine", eng, "--threads", str(a.threads), "--model-dir", model_dir, "--image", image]
        args += ["--repeats", str(a.repeats), "--warmup", str(a.warmup)]
        res[eng] = common.run_engine_process(
            __file__, args, os.path.join(work, f"{eng}.json"), a.threads, a.timeout, eng
        )
    checks = {}
    for suffix, label in ((".npy", "pipeline"), (".bg.npy", "background graph")):
        ours = np.load(os.path.join(work, "msvision.json" + suffix)).astype(np.float64)
        theirs = np.load(os.path.join(work, "modelscope.json" + suffix)).astype(np.float64)
        diff = np.abs(ours - theirs)
        checks[label] = f"max difference {diff.max():.3g}, {(diff > 1e-3).mean():.2e} of values beyond 1e-3"
    ms, ours = res["modelscope"], res["msvision"]
    flops = generator_conv_flops(*BG_SIZE)
    lines = [
        "| Engine | Whole call, median (s) | ModelScope ÷ engine | Background graph 720x1280, median (s) "
        "| ModelScope ÷ engine | direct-conv GFLOP/s equivalent (% of fp32 peak) | Peak RSS (MiB) | Load (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in ((f"ModelScope pipeline (TensorFlow {ms['version']})", ms), ("msvision pipeline", ours)):
        rate = flops / r["bg"]["median"]
        lines.append(
            f"| {label} | {common.fmt_s(r['e2e']['median'])} | {ms['e2e']['median'] / r['e2e']['median']:.2f}× "
            f"| {common.fmt_s(r['bg']['median'])} | {ms['bg']['median'] / r['bg']['median']:.2f}× "
            f"| {rate / 1e9:.0f} ({rate / FP32_PEAK:.0%}) | {r['peak_rss_mib']:.0f} | {r['load_s']:.2f} |"
        )
    ours_bg = np.load(os.path.join(work, "msvision.json.bg.npy")).astype(np.float64)
    for eng in common.TF_GRAPH_PEERS:
        r = res[eng]
        rate = flops / r["bg"]["median"]
        diff = np.abs(np.load(os.path.join(work, f"{eng}.json.bg.npy")).astype(np.float64) - ours_bg).max()
        lines.append(
            f"| OpenVINO {r['peer']['version'].split()[1]} ({r['peer']['precision']}), background graph only; "
            f"max\\|Δ\\| vs msvision {diff:.3g} | – | – | {common.fmt_s(r['bg']['median'])} "
            f"| {ms['bg']['median'] / r['bg']['median']:.2f}× | {rate / 1e9:.0f} ({rate / FP32_PEAK:.0%}) "
            f"| {r['peak_rss_mib']:.0f} | {r['load_s']:.2f} |"
        )
    m = common.machine_info()
    vers = common.package_versions(
        ["tensorflow-cpu", "openvino", "modelscope", "numpy", "opencv-python-headless"]
    )
    ops = ", ".join(f"{k} {v}" for k, v in ours["ops"].items())
    header = [
        f"## DCT-Net portrait cartoon — {common.now_utc()}",
        "",
        f"- Command: `python3 {' '.join(shlex.quote(x) for x in sys.argv)}`",
        f"- Machine: {m['cpu_model']} ({m['cpus']} CPUs, AVX-512 {'yes' if m['avx512'] else 'no'}); "
        f"load average at end {common.load_average()}",
        f"- Threads: {a.threads} for both; {a.warmup} warm-up + {a.repeats} timed calls, each engine in its own "
        "process",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- Inputs: the pipeline on a {PORTRAIT[0]}x{PORTRAIT[1]} portrait PNG (faces/ulfd_5.jpg, bicubic; one face "
        f"found); the background graph on a {BG_SIZE[1]}x{BG_SIZE[0]} random BGR image "
        f"({flops / 1e9:.0f} GFLOP of convolutions)",
        "- Model: the tests' directory (generators from ModelScope's network.py/loss.py, seeded weights; face "
        "analyser stand-ins)",
        "- Output check: " + "; ".join(f"{k}: {v}" for k, v in checks.items()),
        f"- Background graph's op histogram (after pruning and folding): {ops}; {ours['steps']} plan steps",
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
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--results", default=os.path.join(common.BENCH_DIR, "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--timeout", type=int, default=1800)
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
