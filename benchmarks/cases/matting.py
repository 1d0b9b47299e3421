#!/usr/bin/env python3
"""Portrait matting (BSHM's TF graph convention): ModelScope's ImageMattingPipeline (TensorFlow) vs msvision's.

    python3 benchmarks/run.py matting --threads 2 [--size 1024] [--width 32] [--repeats 7]

The hub is unreachable, so the model directory holds the tests' BSHM stand-in graph (tests/support/tf_graphs.py:
coarse mask UNet, quality unification and refinement nets, BatchNorm under a training_flag cond, shape subgraphs
sizing the resizes; the graph resizes the image to a long side of 512 px inside), frozen by TensorFlow with
seeded weights at ``--width`` base channels. Input: a ``--size`` x ``--size`` portrait (scikit-image's astronaut,
resized with PIL bicubic) saved as PNG. Each engine runs in its own subprocess with the same threads (TensorFlow:
TF_NUM_INTRAOP_THREADS, OMP_NUM_THREADS; msvision ``threads=``); timed: the whole ``pipeline(path)`` call and the
graph run inside it (ModelScope: ``Session.run``; msvision: the imported graph). The outputs are compared.
The graph alone is timed on the input the pipeline hands it: msvision's imported graph and OpenVINO's CPU plugin
reading the same ``tf_graph.pb`` itself (fp32, and its default precision: bf16 on this CPU).
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

TASK = "portrait-matting"


def _tf_graphs():
    common.use_test_fixtures()
    from support import tf_graphs

    return tf_graphs


def engine_modelscope(a) -> dict:
    t0 = time.perf_counter()
    tf_graphs = _tf_graphs()
    pipe = tf_graphs.modelscope_tf_pipeline(TASK, a.model_dir)
    load_s = time.perf_counter() - t0
    acc = [0.0]
    pipe._session.run = common.timed(pipe._session.run, acc)
    e2e, net = common.timed_e2e(lambda: pipe(a.image), acc, a.repeats, a.warmup)
    np.save(a.json_out + ".npy", pipe(a.image)["output_img"])
    import tensorflow as tf

    return {"load_s": load_s, "e2e": e2e, "net": net, "version": tf.__version__}


def engine_msvision(a) -> dict:
    pipe, load_s = common.load_msvision_pipeline(TASK, a.model_dir, a.threads)
    acc, graph_input = [0.0], []
    run = pipe.model.run

    def recording_run(x):
        graph_input[:] = [x]
        return run(x)

    pipe.model.run = common.timed(recording_run, acc)
    e2e, net = common.timed_e2e(lambda: pipe(a.image), acc, a.repeats, a.warmup)
    np.save(a.json_out + ".npy", pipe(a.image)["output_img"])
    x = graph_input[0]
    np.save(os.path.join(os.path.dirname(a.json_out), "graph_input.npy"), x)
    bare = common.summarize(common.time_calls(lambda: run(x), a.repeats, a.warmup))
    np.save(a.json_out + ".graph.npy", run(x))
    hist = pipe.model.graph.op_histogram()
    steps = pipe.model.steps()
    return {
        "load_s": load_s,
        "e2e": e2e,
        "net": net,
        "bare": bare,
        "ops": dict(hist.most_common()),
        "steps": len(steps),
    }


def engine_openvino(a) -> dict:
    """OpenVINO (``a.engine``: common.TF_GRAPH_PEERS) on the frozen graph, fed the pipeline's graph input."""
    x = np.load(os.path.join(os.path.dirname(a.json_out), "graph_input.npy"))
    path = os.path.join(a.model_dir, "tf_graph.pb")
    peer = common.TfGraphPeer(a.engine, path, "input_image:0", "output_png:0", x.shape, a.threads)
    bare = common.summarize(common.time_calls(lambda: peer.run(x), a.repeats, a.warmup))
    np.save(a.json_out + ".graph.npy", peer.run(x))
    return {"load_s": peer.load_s, "bare": bare, "peer": peer.info}


ENGINE_FUNCS = {
    "modelscope": engine_modelscope,
    "msvision": engine_msvision,
    **{peer: engine_openvino for peer in common.TF_GRAPH_PEERS},
}


def orchestrate(a) -> None:
    t_start = time.perf_counter()
    work = os.path.join(common.OUT_DIR, "matting")
    os.makedirs(work, exist_ok=True)
    recipe = {"graph": "bshm_graph", "seed": 0, "width": a.width}

    def build(d):
        tf_graphs = _tf_graphs()
        tf_graphs.make_matting_dir(d, TASK, graph=tf_graphs.bshm_graph(seed=0, width=a.width))

    model_dir = common.cached_model_dir(f"matting_bshm_w{a.width}", recipe, build, weights="tf_graph.pb")
    from PIL import Image

    image = os.path.join(work, f"portrait_{a.size}.png")
    Image.open(common.skimage_data_path("astronaut.png")).convert("RGB").resize(
        (a.size, a.size), Image.BICUBIC
    ).save(image)
    res = {}
    for eng in ("msvision", "modelscope", *common.TF_GRAPH_PEERS):
        args = ["--engine", eng, "--threads", str(a.threads), "--model-dir", model_dir, "--image", image]
        args += ["--repeats", str(a.repeats), "--warmup", str(a.warmup)]
        res[eng] = common.run_engine_process(
            __file__, args, os.path.join(work, f"{eng}.json"), a.threads, a.timeout, eng
        )
    ours_img = np.load(os.path.join(work, "msvision.json.npy"))
    theirs_img = np.load(os.path.join(work, "modelscope.json.npy"))
    colour_equal = bool(np.array_equal(ours_img[..., :3], theirs_img[..., :3]))
    alpha_diff = np.abs(ours_img[..., 3].astype(int) - theirs_img[..., 3].astype(int))
    ms, ours = res["modelscope"], res["msvision"]
    lines = [
        "| Engine | Whole call, median (s) | Graph run, median (s) | ModelScope ÷ engine (call / graph) "
        "| Peak RSS (MiB) | Load (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, r in ((f"ModelScope pipeline (TensorFlow {ms['version']})", ms), ("msvision pipeline", ours)):
        ratio = f"{ms['e2e']['median'] / r['e2e']['median']:.2f}× / {ms['net']['median'] / r['net']['median']:.2f}×"
        lines.append(
            f"| {label} | {common.fmt_s(r['e2e']['median'])} | {common.fmt_s(r['net']['median'])} | {ratio} | "
            f"{r['peak_rss_mib']:.0f} | {r['load_s']:.2f} |"
        )
    ours_graph = np.load(os.path.join(work, "msvision.json.graph.npy"))
    peer_lines = [
        "| Graph alone, on the pipeline's graph input | Median (s) | this ÷ msvision | max\\|Δ\\| vs msvision "
        "| Peak RSS (MiB) | Load (s) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| msvision | {common.fmt_s(ours['bare']['median'])} | 1.00× | – | {ours['peak_rss_mib']:.0f} | "
        f"{ours['load_s']:.2f} |",
    ]
    for eng in common.TF_GRAPH_PEERS:
        r = res[eng]
        diff = np.abs(
            np.load(os.path.join(work, f"{eng}.json.graph.npy")).astype(np.float64) - ours_graph
        ).max()
        peer_lines.append(
            f"| OpenVINO {r['peer']['version'].split()[1]} ({r['peer']['precision']}) | "
            f"{common.fmt_s(r['bare']['median'])} | {r['bare']['median'] / ours['bare']['median']:.2f}× | "
            f"{diff:.3g} | {r['peak_rss_mib']:.0f} | {r['load_s']:.2f} |"
        )
    m = common.machine_info()
    vers = common.package_versions(
        ["tensorflow-cpu", "openvino", "modelscope", "numpy", "opencv-python-headless"]
    )
    ops = ", ".join(f"{k} {v}" for k, v in ours["ops"].items())
    header = [
        f"## Portrait matting (BSHM graph convention) — {common.now_utc()}",
        "",
        f"- Command: `python3 {' '.join(shlex.quote(x) for x in sys.argv)}`",
        f"- Machine: {m['cpu_model']} ({m['cpus']} CPUs, AVX-512 {'yes' if m['avx512'] else 'no'}); "
        f"load average at end {common.load_average()}",
        f"- Threads: {a.threads} for both; {a.warmup} warm-up + {a.repeats} timed calls, each engine in its own "
        "process",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- Input: {a.size}x{a.size} portrait PNG (astronaut, bicubic); model: the tests' BSHM stand-in graph, "
        f"width {a.width}, seeded weights (network at 512x512 inside the graph)",
        f"- Output check: colour channels equal: {colour_equal}; alpha max difference {alpha_diff.max()} "
        f"({(alpha_diff > 0).mean():.2e} of pixels differ)",
        f"- Imported graph's op histogram (after pruning and folding): {ops}; {ours['steps']} plan steps",
        f"- Whole run: {time.perf_counter() - t_start:.0f} s wall",
    ]
    report = "\n".join(header) + "\n\n" + "\n".join(lines) + "\n\n" + "\n".join(peer_lines) + "\n"
    print(report)
    if not a.no_write:
        with open(a.results, "a") as f:
            f.write(report + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--width", type=int, default=32, help="base channels of the stand-in graph")
    ap.add_argument("--repeats", type=int, default=7)
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
