#!/usr/bin/env python3
"""HRNet body keypoints: ModelScope's body-2d-keypoints pipeline vs msvision's, with the same person boxes.

    python3 benchmarks/run.py hrnet --threads 2 [--person-counts 1,3] [--repeats 7]

Both pipelines get the same fixed person boxes on ../shared/assets/images/faces/office1.jpg (ModelScope's
hard-coded mmdet human detector needs mmcv-full, so its detector call is replaced by the boxes; its NumPy image is
handed over as a torch tensor, which its ``.clone()`` call needs). Each engine runs in its own subprocess with the
same threads; timed: the whole call (crops, resizes, normalisation, HRNet on all persons in one batch, decoding)
and the HRNet stage inside it (ModelScope: ``keypoint_model.forward``; msvision: the graph run). The bare network
is timed too on the batch msvision's pipeline builds: msvision's graph, and ONNX Runtime and OpenVINO (fp32 and its
default precision) on ``torch.onnx.export`` of ModelScope's PoseHighResolutionNetV2 module (opset 17, fixed
shape). The model directory has random weights from ModelScope's PoseHighResolutionNetV2
(tests/support/model_dirs.py).
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

BOXES = [[30.5, 40.25, 180.75, 399], [300, 20, 450, 390], [600.2, 60.7, 760.9, 398.1]]
IMAGE = os.path.join(os.path.dirname(common.REPO_ROOT), "shared", "assets", "images", "faces", "office1.jpg")


def _detector(n, tensors=True):
    """The fixed boxes as a detector returns them: torch tensors for ModelScope, arrays for msvision (whose
    process then never imports torch)."""
    boxes = np.array(BOXES[:n], np.float32)
    if not tensors:
        return lambda image: {"scores": np.full(n, 0.9, np.float32), "boxes": boxes.copy()}
    import torch

    return lambda image: {"scores": torch.full((n,), 0.9), "boxes": torch.from_numpy(boxes.copy())}


def engine_modelscope(a) -> dict:
    common.use_torchvision_stub()
    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(a.threads)
    oracle = common.use_test_oracle()
    pipe = oracle.modelscope_keypoints_pipeline(a.model_dir, _detector(a.persons))
    load_s = time.perf_counter() - t0
    acc = [0.0]
    pipe.keypoint_model.forward = common.timed(pipe.keypoint_model.forward, acc)
    e2e, net = common.timed_e2e(lambda: pipe(a.image), acc, a.repeats, a.warmup)
    return {"load_s": load_s, "e2e": e2e, "net": net}


def engine_msvision(a) -> dict:
    common.use_repo_msvision()
    t0 = time.perf_counter()
    import msvision

    pipe = msvision.pipeline(
        "body-2d-keypoints",
        model=a.model_dir,
        human_detector=_detector(a.persons, tensors=False),
        threads=a.threads,
        precision="bf16" if a.engine == "msvision_bf16" else "fp32",
    )
    load_s = time.perf_counter() - t0
    acc, batch = [0.0], []
    run = pipe.model.run

    def recording_run(x):
        batch[:] = [x]
        return run(x)

    pipe.model.run = common.timed(recording_run, acc)
    e2e, net = common.timed_e2e(lambda: pipe(a.image), acc, a.repeats, a.warmup)
    x = np.ascontiguousarray(batch[0])
    np.save(a.out_prefix + "_input.npy", x.transpose(0, 3, 1, 2))  # NHWC -> NCHW, as the torch module takes
    out = {}

    def bare():
        out["heatmaps"] = run(x)[0]

    bare_times = common.time_calls(bare, a.repeats, a.warmup)
    np.save(a.out_prefix + "_heatmaps.npy", out["heatmaps"].transpose(0, 3, 1, 2))
    return {"load_s": load_s, "e2e": e2e, "net": net, "bare": common.summarize(bare_times)}


def _onnx_path(a) -> str:
    return os.path.join(os.path.dirname(a.out_prefix), f"hrnet_{a.persons}.onnx")


def engine_export(a) -> dict:
    """torch.onnx.export of the PoseHighResolutionNetV2 module of ModelScope's pipeline, at the batch's shape."""
    common.use_torchvision_stub()
    import torch
    from modelscope.pipelines.cv.body_2d_keypoints_pipeline import KeypointsDetection

    torch.set_num_threads(a.threads)
    net = KeypointsDetection(a.model_dir, "cpu").key_points_model.eval()
    return common.export_onnx(net, torch.from_numpy(np.load(a.input_npy)), _onnx_path(a))


def engine_onnx_peer(a) -> dict:
    """ONNX Runtime or OpenVINO (``a.engine``, see common.ONNX_PEERS) on the export."""
    x = np.load(a.input_npy)
    peer = common.OnnxPeer(a.engine, _onnx_path(a), a.threads)
    out = {}

    def bare():
        out["heatmaps"] = peer.run(x)[0]

    bare_times = common.time_calls(bare, a.repeats, a.warmup)
    np.save(a.out_prefix + "_heatmaps.npy", out["heatmaps"])
    return {"load_s": peer.load_s, "bare": common.summarize(bare_times), "peer": peer.info}


ENGINE_FUNCS = {
    "modelscope": engine_modelscope,
    "msvision": engine_msvision,
    "msvision_bf16": engine_msvision,
    "export": engine_export,
    **{peer: engine_onnx_peer for peer in common.ONNX_PEERS},
}


def orchestrate(a) -> None:
    t_start = time.perf_counter()
    work = os.path.join(common.OUT_DIR, "hrnet")
    os.makedirs(work, exist_ok=True)
    model_dir = os.path.join(common.OUT_DIR, "hrnet_random")
    if not os.path.isfile(os.path.join(model_dir, "pytorch_model.pt")):
        common.use_test_fixtures().make_hrnet_dir(model_dir)
    lines = [
        "| Persons | Engine | Whole call, median (s) | HRNet stage, median (s) | ModelScope ÷ msvision (call / stage) "
        "| Peak RSS (MiB) | Load (s) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    bare_lines = [
        "| Persons | Bare network on the same batch | Median (s) | this ÷ msvision | Peak RSS (MiB) | Load (s) "
        "| Heatmaps vs msvision's |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    peers = {}
    bf16 = common.msvision_bf16_available()
    ours_engines = ("msvision", "msvision_bf16") if bf16 else ("msvision",)
    for n in (int(v) for v in a.persons_list.split(",")):
        res = {}
        inp = os.path.join(work, f"msvision_{n}_input.npy")
        for eng in (*ours_engines, "modelscope", "export", *common.ONNX_PEERS):
            if eng == "export" and os.path.isfile(os.path.join(work, f"hrnet_{n}.onnx")) and not a.no_cache:
                continue
            args = ["--engine", eng, "--threads", str(a.threads), "--model-dir", model_dir, "--image", IMAGE]
            args += ["--repeats", str(a.repeats), "--warmup", str(a.warmup), "--persons", str(n)]
            args += ["--out-prefix", os.path.join(work, f"{eng}_{n}"), "--input-npy", inp]
            res[eng] = common.run_engine_process(
                __file__, args, os.path.join(work, f"{eng}_{n}.json"), a.threads, a.timeout, eng
            )
        ms, ours = res["modelscope"], res["msvision"]
        rows = [("ModelScope pipeline (torch)", ms), ("msvision pipeline", ours)]
        if bf16:
            rows.append(("msvision pipeline, bf16 (opt-in)", res["msvision_bf16"]))
        for eng, r in rows:
            ratio = f"{ms['e2e']['median'] / r['e2e']['median']:.2f}× / {ms['net']['median'] / r['net']['median']:.2f}×"
            lines.append(
                f"| {n} | {eng} | {common.fmt_s(r['e2e']['median'])} | {common.fmt_s(r['net']['median'])} | "
                f"{ratio} | {r['peak_rss_mib']:.0f} | {r['load_s']:.2f} |"
            )
        ref = np.load(os.path.join(work, f"msvision_{n}_heatmaps.npy"))
        for eng in (*ours_engines, *common.ONNX_PEERS):
            r = res[eng]
            label = {"msvision": "msvision graph", "msvision_bf16": "msvision graph, bf16 (opt-in)"}.get(
                eng, common.ONNX_PEER_LABEL.get(eng)
            )
            if eng == "msvision":
                check = "–"
            else:
                if "peer" in r:
                    peers[eng] = r["peer"]
                diff = np.abs(np.load(os.path.join(work, f"{eng}_{n}_heatmaps.npy")) - ref)
                check = f"max\\|Δ\\| {diff.max():.1e} (heatmap range {np.abs(ref).max():.2f})"
            bare_lines.append(
                f"| {n} | {label} | {common.fmt_s(r['bare']['median'])} | "
                f"{r['bare']['median'] / ours['bare']['median']:.2f}× | {r['peak_rss_mib']:.0f} | "
                f"{r['load_s']:.2f} | {check} |"
            )
    m = common.machine_info()
    vers = common.package_versions(["torch", "modelscope", "numpy", "opencv-python-headless"])
    header = [
        f"## HRNet body keypoints — {common.now_utc()}",
        "",
        f"- Command: `python3 {' '.join(shlex.quote(x) for x in sys.argv)}`",
        f"- Machine: {m['cpu_model']} ({m['cpus']} CPUs, AVX-512 {'yes' if m['avx512'] else 'no'}); "
        f"load average at end {common.load_average()}",
        f"- Threads: {a.threads} for both; {a.warmup} warm-up + {a.repeats} timed calls, each engine in its own "
        "process",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        "- Image: ../shared/assets/images/faces/office1.jpg (899x399) with the same fixed person boxes for both "
        "(ModelScope's mmdet detector replaced); model: PoseHighResolutionNetV2 (W48, 128x128, 15 joints), random "
        "weights",
        "- Bare network: the batch msvision's pipeline built (NCHW for the ONNX export of ModelScope's module); "
        "OpenVINO with the latency hint, one stream, INFERENCE_NUM_THREADS",
        *(
            f"- {common.ONNX_PEER_LABEL[p]}: {v['version']}, inference precision {v['precision']}"
            for p, v in peers.items()
        ),
        *([] if bf16 else [f"- {common.BF16_NOT_RUN}"]),
        f"- Whole run: {time.perf_counter() - t_start:.0f} s wall",
    ]
    report = "\n".join(header) + "\n\n" + "\n".join(lines) + "\n\n" + "\n".join(bare_lines) + "\n"
    print(report)
    if not a.no_write:
        with open(a.results, "a") as f:
            f.write(report + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--person-counts", dest="persons_list", default="1,3", help="person counts, comma-separated (<= 3)"
    )
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--results", default=os.path.join(common.BENCH_DIR, "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--no-cache", action="store_true", help="export ONNX again even if cached")
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--engine", choices=sorted(ENGINE_FUNCS), help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--persons", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    ap.add_argument("--out-prefix", help=argparse.SUPPRESS)
    ap.add_argument("--input-npy", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.engine:
        common.engine_main(ENGINE_FUNCS, a)
    else:
        orchestrate(a)


if __name__ == "__main__":
    main()
