#!/usr/bin/env python3
"""MogFace face detection (ResNet-101 + LFPN + MogPredNet): ModelScope's pipeline vs msvision, and the bare network
on ONNX Runtime and OpenVINO vs msvision's graph.

    python3 benchmarks/run.py mogface --threads 2 [--size 1000] [--repeats 3] [--model-dir DIR]

Every engine runs in its own subprocess (this script re-invoked with ``--engine X``) with the same thread count
(torch.set_num_threads / ORT intra_op_num_threads with inter_op 1 / msvision ``threads=``, and OMP_NUM_THREADS),
on the same model directory and the same PNG (a bundled real photo resized to ``--size`` x ``--size``):

* ModelScope and msvision: end-to-end ``pipeline('face-detection', model=dir)(png_path)``, min and median of
  ``--repeats`` calls after ``--warmup`` calls; the network time inside those calls is timed too (ModelScope:
  ``detector.net(img)``; msvision: the network's session ``run``);
* the bare network: msvision's graph ``run``, ONNX Runtime's ``session.run`` and OpenVINO's inference (CPU
  plugin, latency hint; forced to fp32, and with its defaults: bf16 on this CPU) of ``torch.onnx.export`` of
  ModelScope's own MogFace module (opset 17, fixed input shape) on the same normalised input tensor, min and
  median of ``--repeats`` runs after ``--warmup``;
* peak RSS of each engine's process, and the outputs checked against ModelScope (detections) and between the
  two bare networks (max abs difference of the per-level maps).

Without ``--model-dir`` a model directory with seeded random weights from ModelScope's MogFace class is written to
benchmarks/out/ (as tests/test_mogface.py builds it: random BatchNorm/GroupNorm parameters, the cls head's bias set
so that some anchors pass the 0.82 threshold).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
import common  # noqa: E402

TASK = "face-detection"
PIPELINE_TYPE = "resnet101-face-detection-cvpr22papermogface"
CLS_BIAS = 1.3
ENGINES = ("modelscope", "msvision", *common.ONNX_PEERS)
LABEL = {
    "modelscope": "ModelScope pipeline (torch)",
    "msvision": "msvision pipeline",
    **{peer: f"{label} (bare network)" for peer, label in common.ONNX_PEER_LABEL.items()},
    "msvision_net": "msvision graph (bare network)",
}


# ================================================================ model directory and image


def build_model_dir(dest: str, seed: int = 0) -> str:
    """ModelScope's MogFace with seeded random weights (tests/support/model_dirs.py), as a ModelScope model dir."""
    return common.use_test_fixtures().make_mogface_dir(dest, seed=seed, cls_bias=CLS_BIAS)


def make_image(size: int, directory: str) -> tuple[str, str]:
    """scikit-image's astronaut.png (512 x 512, a real photo with a face), Lanczos-resized to size x size."""
    from PIL import Image

    os.makedirs(directory, exist_ok=True)
    img = Image.open(common.skimage_data_path("astronaut.png")).convert("RGB")
    what = f"skimage astronaut.png {img.width}x{img.height}"
    if img.size != (size, size):
        img = img.resize((size, size), Image.LANCZOS)
        what += f", Lanczos resize to {size}x{size}"
    path = os.path.join(directory, f"mogface_{size}.png")
    img.save(path)
    return path, what


def onnx_file(onnx_dir: str, h: int, w: int) -> str:
    return os.path.join(onnx_dir, f"mogface_{h}x{w}.onnx")


# ================================================================ engines (each in its own subprocess)


def _save_detections(path: str, result: dict) -> None:
    np.savez(
        path,
        scores=np.asarray(result["scores"], np.float64),
        boxes=np.asarray(result["boxes"], np.float64).reshape(-1, 4),
    )


def engine_modelscope(a) -> dict:
    pipe, load_s = common.load_modelscope_pipeline(TASK, a.model_dir, a.threads)
    import torch

    rss_loaded = common.current_rss_mib()
    acc, out = [0.0], {}
    pipe.detector.net.forward = common.timed(pipe.detector.net.forward, acc)

    def call():
        out["r"] = pipe(a.image)

    e2e, net = common.timed_e2e(call, acc, a.repeats, a.warmup)
    _save_detections(a.out_prefix + ".npz", out["r"])
    return {
        "load_s": load_s,
        "e2e": e2e,
        "net": net,
        "rss_after_load_mib": rss_loaded,
        "boxes": len(out["r"]["scores"]),
        "torch_threads": torch.get_num_threads(),
    }


def engine_msvision(a) -> dict:
    pipe, load_s = common.load_msvision_pipeline(TASK, a.model_dir, a.threads)
    import msvision

    rss_loaded = common.current_rss_mib()
    model = pipe.model
    acc, out = [0.0], {}
    model.run = common.timed(model.run, acc)

    def call():
        out["r"] = pipe(a.image)

    e2e, net = common.timed_e2e(call, acc, a.repeats, a.warmup)
    _save_detections(a.out_prefix + ".npz", out["r"])
    # the bare graph on the pipeline's own input tensor (what ONNX Runtime gets too)
    x = pipe.preprocess(a.image)["img"]  # NHWC: msvision's sessions take the image's own layout
    np.save(a.out_prefix + "_input.npy", np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # NCHW for the peers
    session = model._sessions[0]
    maps = {}

    def bare():
        maps["out"] = session.run([x])

    bare_times = common.time_calls(bare, a.repeats, a.warmup)
    np.savez(a.out_prefix + "_maps.npz", *[m.transpose(0, 3, 1, 2) for m in maps["out"]])
    return {
        "load_s": load_s,
        "e2e": e2e,
        "net": net,
        "bare": common.summarize(bare_times),
        "rss_after_load_mib": rss_loaded,
        "boxes": len(out["r"]["scores"]),
        "build_info": msvision.build_info(),
        "version": msvision.__version__,
    }


class _PerLevel:
    """ModelScope's MogFace with the per-level maps as outputs (sigmoid(cls), loc per level, as msvision's
    graph returns them), for the ONNX export."""

    @staticmethod
    def wrap(net):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                levels = self.m.fpn(self.m.backbone(x))[0]
                pn = self.m.pred_net
                outs = []
                for f in levels:
                    f = pn.conv_SSH(f)
                    outs.append(torch.sigmoid(pn.pred_cls(pn.deep_cls_head(f))))
                    outs.append(pn.pred_loc(pn.deep_loc_head(f)))
                return tuple(outs)

        return Wrapped(net).eval()


def engine_export(a) -> dict:
    """torch.onnx.export of ModelScope's MogFace module at the input shape msvision's pipeline feeds the network;
    the dynamo exporter first, the TorchScript one if that fails."""
    common.use_torchvision_stub()
    import torch
    from modelscope.models.cv.face_detection.mogface.models.mogface import MogFace

    torch.set_num_threads(a.threads)
    net = MogFace()
    net.load_state_dict(torch.load(os.path.join(a.model_dir, "pytorch_model.pt"), weights_only=True))
    wrapped = _PerLevel.wrap(net.eval())
    h, w = a.shape
    path = onnx_file(a.onnx_dir, h, w)
    os.makedirs(a.onnx_dir, exist_ok=True)
    report = common.export_onnx(wrapped, torch.rand(1, 3, h, w), path, input_names=["img"])
    report["bytes"] = os.path.getsize(path)
    return report


def engine_onnx_peer(a) -> dict:
    """ONNX Runtime or OpenVINO (``a.engine``, see common.ONNX_PEERS) on the export."""
    x = np.load(a.input_npy)
    peer = common.OnnxPeer(a.engine, onnx_file(a.onnx_dir, *x.shape[2:]), a.threads)
    rss_loaded = common.current_rss_mib()
    out = {}

    def bare():
        out["maps"] = peer.run(x)

    bare_times = common.time_calls(bare, a.repeats, a.warmup)
    np.savez(a.out_prefix + "_maps.npz", *out["maps"])
    return {
        "load_s": peer.load_s,
        "bare": common.summarize(bare_times),
        "rss_after_load_mib": rss_loaded,
        "peer": peer.info,
    }


ENGINE_FUNCS = {
    "modelscope": engine_modelscope,
    "msvision": engine_msvision,
    **{peer: engine_onnx_peer for peer in common.ONNX_PEERS},
    "export": engine_export,
}


def engine_main(a) -> None:
    common.engine_main(ENGINE_FUNCS, a)


# ================================================================ orchestration


def run_child(a, engine: str, work: str, extra: list[str] | None = None) -> dict:
    args = ["--engine", engine, "--threads", str(a.threads), "--model-dir", a.model_dir, "--image", a.image]
    args += ["--repeats", str(a.repeats), "--warmup", str(a.warmup), "--onnx-dir", a.onnx_dir]
    args += ["--out-prefix", os.path.join(work, engine), *(extra or [])]
    json_out = os.path.join(work, f"{engine}.json")
    return common.run_engine_process(__file__, args, json_out, a.threads, a.timeout, f"engine {engine}")


def _iou(box, boxes):
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area - inter)


def compare_detections(ours_npz: str, ref_npz: str) -> str:
    """Boxes paired by coordinates (as tests/test_mogface.py does); unpaired boxes classified as NMS near-ties
    (an overlapping box >= 2 px away with a score within 1e-4 is on the other side) or unexplained."""
    a, b = np.load(ours_npz), np.load(ref_npz)
    sa, ba, sb, bb = a["scores"], a["boxes"], b["scores"], b["boxes"]
    used = np.zeros(len(sa), bool)
    pairs, only_b = [], []
    for i in range(len(sb)):
        d = np.abs(ba - bb[i]).max(axis=1) if len(ba) else np.zeros(0)
        cand = [j for j in np.argsort(d) if not used[j] and d[j] <= 0.01 and abs(sa[j] - sb[i]) <= 2e-5]
        if cand:
            used[cand[0]] = True
            pairs.append((cand[0], i))
        else:
            only_b.append(i)
    only_a = list(np.nonzero(~used)[0])
    ties = unexplained = 0
    for idx, s, bx, s2, bx2 in ((only_b, sb, bb, sa, ba), (only_a, sa, ba, sb, bb)):
        for i in idx:
            apart = np.abs(bx2 - bx[i]).max(axis=1) >= 2.0 if len(bx2) else np.zeros(0, bool)
            rival = len(bx2) and np.any((np.abs(s2 - s[i]) <= 1e-4) & (_iou(bx[i], bx2) > 0.3) & apart)
            ties += bool(rival)
            unexplained += not rival
    text = f"{len(sa)} boxes vs {len(sb)}: {len(pairs)} identical"
    if pairs:
        ja, jb = np.array(pairs).T
        text += f" (max\\|Δ\\| score {np.abs(sa[ja] - sb[jb]).max():.1e}, box {np.abs(ba[ja] - bb[jb]).max():.1e} px)"
    if ties:
        text += f"; {ties} differ by NMS over near-tied scores (|Δ| ≤ 1e-4)"
    if unexplained:
        text += f"; {unexplained} UNEXPLAINED"
    return text


def compare_maps(ours_npz: str, theirs_npz: str) -> str:
    a, b = np.load(ours_npz), np.load(theirs_npz)
    keys = sorted(a.files, key=lambda k: int(k.split("_")[1]))
    conf = max(float(np.abs(a[k] - b[k]).max()) for k in keys[0::2])
    loc = max(float(np.abs(a[k] - b[k]).max()) for k in keys[1::2])
    return f"12 maps; max\\|Δ\\| conf {conf:.1e}, loc {loc:.1e}"


def model_cache_key(model_dir: str) -> str:
    h = hashlib.sha1(os.path.realpath(model_dir).encode())
    for name in ("pytorch_model.pt", "configuration.json"):
        st = os.stat(os.path.join(model_dir, name))
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(common.package_versions(["torch"])["torch"].encode())
    return h.hexdigest()[:16]


def orchestrate(a) -> None:
    t_start = time.perf_counter()
    work = os.path.join(common.OUT_DIR, "mogface")
    os.makedirs(work, exist_ok=True)
    model_note = a.model_dir
    if a.model_dir is None:
        recipe = {
            "seed": a.seed,
            "cls_bias": CLS_BIAS,
            "builder": "tests/support/model_dirs.make_mogface_dir",
        }
        a.model_dir = common.cached_model_dir(
            "mogface_random", recipe, lambda d: build_model_dir(d, seed=a.seed), a.no_cache
        )
        model_note = (
            f"ModelScope MogFace (ResNet-101), random weights (seed {a.seed}, BatchNorm/GroupNorm randomised, "
            f"pred_cls bias {CLS_BIAS}), built in benchmarks/out/"
        )
    a.model_dir = os.path.abspath(a.model_dir)
    a.image, image_note = make_image(a.size, os.path.join(work, "images"))
    a.onnx_dir = os.path.join(work, "onnx", model_cache_key(a.model_dir))
    if a.no_cache and os.path.isdir(a.onnx_dir):
        shutil.rmtree(a.onnx_dir)

    results, notes = {}, []
    for eng in ("msvision", "modelscope"):
        print(f"{eng}: {a.warmup}+{a.repeats} runs ...", file=sys.stderr)
        results[eng] = run_child(a, eng, work)
        e = results[eng]
        print(f"{eng}: e2e median {e['e2e']['median']:.2f} s ({e['wall_s']:.0f} s wall)", file=sys.stderr)
    x = np.load(os.path.join(work, "msvision_input.npy"))
    h, w = x.shape[2:]
    if not os.path.isfile(onnx_file(a.onnx_dir, h, w)):
        print("exporting ONNX ...", file=sys.stderr)
        exp = run_child(a, "export", work, ["--shape", str(h), str(w)])
        notes.append(
            f"ONNX export (opset 17, fixed input 1x3x{h}x{w}): {exp['exporter']} exporter, {exp['export_s']:.0f} s, "
            f"{exp['bytes'] / 2**20:.0f} MiB"
            + (f"; failures before fallback: {' | '.join(exp['errors'])}" if exp["errors"] else "")
        )
    else:
        notes.append(f"ONNX export (opset 17, fixed input 1x3x{h}x{w}): cached in benchmarks/out/")
    for peer in common.ONNX_PEERS:
        print(f"{peer}: {a.warmup}+{a.repeats} runs ...", file=sys.stderr)
        results[peer] = run_child(a, peer, work, ["--input-npy", os.path.join(work, "msvision_input.npy")])
        info = results[peer]["peer"]
        notes.append(
            f"{common.ONNX_PEER_LABEL[peer]}: {info['version']}, inference precision {info['precision']}"
        )
        if peer != "ort":
            notes.append(
                f"{common.ONNX_PEER_LABEL[peer]} maps vs ONNX Runtime's: "
                + compare_maps(os.path.join(work, f"{peer}_maps.npz"), os.path.join(work, "ort_maps.npz"))
            )

    ms, ours, ort = results["modelscope"], results["msvision"], results["ort"]
    det_check = compare_detections(os.path.join(work, "msvision.npz"), os.path.join(work, "modelscope.npz"))
    map_check = compare_maps(os.path.join(work, "msvision_maps.npz"), os.path.join(work, "ort_maps.npz"))
    runs = f"{a.warmup}+{a.repeats}"
    ms_e2e, ms_net = ms["e2e"]["median"], ms["net"]["median"]
    rows = [
        # label, what, timings, reference median for the ratio, process results, check
        (LABEL["modelscope"], "pipeline", ms["e2e"], ms_e2e, ms, "reference"),
        (LABEL["msvision"], "pipeline", ours["e2e"], ms_e2e, ours, det_check),
        ("ModelScope: `detector.net` inside its pipeline", "network", ms["net"], ms_net, ms, "–"),
        *(
            (LABEL[peer], "network", results[peer]["bare"], ms_net, results[peer], "–")
            for peer in common.ONNX_PEERS
        ),
        (LABEL["msvision_net"], "network", ours["bare"], ms_net, ours, f"vs ONNX Runtime: {map_check}"),
    ]
    lines = [
        "| Engine | Timed | Runs | Min (s) | Median (s) | ModelScope ÷ this (median) | this ÷ msvision (median) "
        "| Peak RSS (MiB) | Load (s) | Output check |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, what, t, ref, res, check in rows:
        ours_t = ours["e2e"] if what == "pipeline" else ours["bare"]
        lines.append(
            f"| {label} | {what} | {runs} | {common.fmt_s(t['min'])} | {common.fmt_s(t['median'])} | "
            f"{ref / t['median']:.2f}× | {t['median'] / ours_t['median']:.2f}× | "
            f"{res['peak_rss_mib']:.0f} | {res['load_s']:.2f} | {check} |"
        )
    table = "\n".join(lines)
    speedup = ms["e2e"]["median"] / ours["e2e"]["median"]

    m = common.machine_info()
    vers = common.package_versions(
        [
            "torch",
            "onnxruntime",
            "openvino",
            "onnx",
            "onnxscript",
            "modelscope",
            "numpy",
            "opencv-python-headless",
        ]
    )
    command = "python3 " + " ".join(shlex.quote(x) for x in sys.argv)
    header = [
        f"## MogFace face detection — {common.now_utc()}" + (f" — {a.label}" if a.label else ""),
        "",
        f"- Command: `{command}`",
        f"- Machine: {m['cpu_model']} ({m['hypervisor'] + ' guest, ' if m['hypervisor'] else ''}"
        f"{m['cpus']} CPUs, {m['cores_per_socket']} cores/socket × {m['sockets']} socket, "
        f"{m['threads_per_core']} thread/core, AVX-512 {'yes' if m['avx512'] else 'no'}); {m['os']}; "
        f"Python {m['python']}; load average at end {common.load_average()}",
        f"- Threads: {a.threads} for every engine (torch.set_num_threads, ORT intra_op_num_threads with inter_op 1, "
        f"OpenVINO INFERENCE_NUM_THREADS with one stream and the latency hint, msvision `threads=`; "
        f"OMP_NUM_THREADS={a.threads})",
        f"- msvision.build_info(): `{ours.get('build_info')}`",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- Model: {model_note}",
        f"- Image: {image_note} (≤ 1500 px, so no downscaling; network input 1×3×{h}×{w})",
        "- Pipelines: `pipeline('face-detection', model=dir)(png_path)` end to end (decode, normalise, network, "
        "priors, decode, threshold 0.82, NMS, lists); the network column is the time spent in "
        "`detector.net(img)` (ModelScope) or the graph run (msvision) inside those calls.",
        "- Bare network: msvision's graph `run`, ONNX Runtime's `session.run` and OpenVINO's `infer` on the same "
        "normalised input tensor; the ONNX model is ModelScope's MogFace module returning the same 12 per-level "
        "maps.",
        "- Peak RSS: ru_maxrss of each engine's own process (imports, model load, all runs).",
        f"- Speed-up of the msvision pipeline over ModelScope's (median): {speedup:.2f}×; bare network, ONNX "
        f"Runtime ÷ msvision: {ort['bare']['median'] / ours['bare']['median']:.2f}×, OpenVINO fp32 ÷ msvision: "
        f"{results['ov_f32']['bare']['median'] / ours['bare']['median']:.2f}×, OpenVINO default ÷ msvision: "
        f"{results['ov_default']['bare']['median'] / ours['bare']['median']:.2f}×",
    ]
    header += [f"- {n}" for n in notes]
    header.append(f"- Whole run: {time.perf_counter() - t_start:.0f} s wall")
    report = "\n".join(header) + "\n\n" + table + "\n"
    print(report)
    if not a.no_write:
        path = a.results
        new = not os.path.exists(path)
        with open(path, "a") as f:  # append only: other benchmarks write their own sections
            if new:
                f.write("# Benchmark results\n\nAppended by the scripts in `benchmarks/`; newest last.\n\n")
            f.write(report + "\n")
        print(f"appended to {path}", file=sys.stderr)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    ap.add_argument("--size", type=int, default=1000, help="square image size (default 1000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per engine (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument(
        "--model-dir", default=None, help="existing ModelScope MogFace directory (default: build one)"
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the random-weight model")
    ap.add_argument("--results", default=os.path.join(common.BENCH_DIR, "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    ap.add_argument("--label", default="", help="text added to the report heading")
    ap.add_argument("--no-cache", action="store_true", help="rebuild the random model and re-export ONNX")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per engine subprocess")
    # internal: one engine in this process
    ap.add_argument("--engine", choices=sorted(ENGINE_FUNCS), help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    ap.add_argument("--out-prefix", help=argparse.SUPPRESS)
    ap.add_argument("--onnx-dir", help=argparse.SUPPRESS)
    ap.add_argument("--input-npy", help=argparse.SUPPRESS)
    ap.add_argument("--shape", type=int, nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.threads < 1 or a.repeats < 1 or a.warmup < 0 or a.size < 1:
        ap.error("--threads, --repeats and --size must be >= 1, --warmup >= 0")
    if a.engine:
        engine_main(a)
    else:
        orchestrate(a)


if __name__ == "__main__":
    main()
