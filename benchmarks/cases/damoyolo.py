#!/usr/bin/env python3
"""DAMO-YOLO object detection (S, M): ModelScope's pipeline vs msvision end to end, and the bare network on ONNX
Runtime and OpenVINO vs msvision's graph.

    python3 benchmarks/run.py damoyolo --threads 2 [--configs S:640x640,S:1280x720,M:640x640] [--repeats 5]

Every engine runs in its own subprocess (this script re-invoked with ``--engine X``) with the same thread count
(torch.set_num_threads / ORT intra_op_num_threads with inter_op 1 / msvision ``threads=``, and OMP_NUM_THREADS),
on the same model directory and PNG (scikit-image's motorcycle_left.png, a real photo, Lanczos-resized to the
config's size):

* ModelScope (``pipeline('image-object-detection', model=dir, trust_remote_code=True)``) and msvision: end to end
  on the PNG path, min and median of ``--repeats`` calls after ``--warmup``; the network's share of those calls
  is timed too (ModelScope: ``model.forward``; msvision: the graph run);
* the bare network: msvision's graph, ONNX Runtime's ``session.run`` and OpenVINO's inference (CPU plugin,
  latency hint; forced to fp32, and with its defaults: bf16 on this CPU) of ``torch.onnx.export`` of ModelScope's
  own backbone + neck + head (opset 17, fixed input shape) on the same padded input tensor;
* peak RSS and load time of each engine's process, and the detections checked against ModelScope's.

The model directories are DAMO-YOLO S / M with random weights from ModelScope's own builders, calibrated as the
tests build them (tests/support/model_dirs.py make_damoyolo_dir), cached in benchmarks/out/.
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

TASK = "image-object-detection"
NAMES = ("person", "bicycle", "car", "cat", "dog")


# ================================================================ model directory, image, FLOPs


def build_model_dir(dest: str, variant: str) -> str:
    from PIL import Image

    calibration = [
        np.asarray(Image.open(common.skimage_data_path(n)).convert("RGB").resize((320, 256)), np.float32)
        for n in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png")
    ]
    return common.use_test_fixtures().make_damoyolo_dir(
        dest,
        variant=variant,
        names=NAMES,
        conf=0.5,
        calibration_images=calibration,
        candidate_fraction=0.001 if variant == "M" else 0.0015,
    )


def model_dir_for(variant: str, rebuild: bool) -> str:
    recipe = {"variant": variant, "builder": "tests/support/model_dirs.make_damoyolo_dir", "names": NAMES}
    return common.cached_model_dir(
        f"damoyolo_{variant}",
        recipe,
        lambda d: build_model_dir(d, variant),
        rebuild,
        weights="damoyolo_model.pt",
    )


def make_image(width: int, height: int, directory: str) -> tuple[str, str]:
    from PIL import Image

    os.makedirs(directory, exist_ok=True)
    img = Image.open(common.skimage_data_path("motorcycle_left.png")).convert("RGB")
    what = f"skimage motorcycle_left.png {img.width}x{img.height}, Lanczos resize to {width}x{height}"
    path = os.path.join(directory, f"damoyolo_{width}x{height}.png")
    img.resize((width, height), Image.LANCZOS).save(path)
    return path, what


def conv_flops(net, height: int, width: int) -> float:
    """2 x multiply-accumulates of every convolution of ModelScope's network ``net`` (RepConvs counted once, as
    the folded 3x3 convolution both engines could run), on the padded input."""
    import torch

    total = [0]

    def hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        if getattr(m, "_msv_skip", False):
            return
        total[0] += 2 * out.numel() * (m.in_channels // m.groups) * k

    for name, m in net.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            m._msv_skip = name.endswith("rbr_1x1.conv")
            m.register_forward_hook(hook)
    with torch.no_grad():
        net.head(
            net.neck(net.backbone(torch.zeros(1, 3, common.pad_to(height, 32), common.pad_to(width, 32))))
        )
    return float(total[0])


def _modelscope(model_dir, threads):
    common.use_torchvision_stub()
    import torch

    torch.set_num_threads(threads)
    from modelscope.pipelines import pipeline

    return pipeline(TASK, model=model_dir, trust_remote_code=True)


# ================================================================ engines (each in its own subprocess)


def _save(path, r):
    np.savez(path, scores=r["scores"], boxes=r["boxes"], labels=np.array(r["labels"], dtype=object))


def engine_modelscope(a) -> dict:
    t0 = time.perf_counter()
    pipe = _modelscope(a.model_dir, a.threads)
    load_s = time.perf_counter() - t0
    acc, out = [0.0], {}
    pipe.model.forward = common.timed(pipe.model.forward, acc)

    def call():
        out["r"] = pipe(a.image)

    e2e, net = common.timed_e2e(call, acc, a.repeats, a.warmup)
    _save(a.out_prefix + ".npz", out["r"])
    flops = conv_flops(pipe.model, *a.hw)
    return {"load_s": load_s, "e2e": e2e, "net": net, "detections": len(out["r"]["scores"]), "flops": flops}


def engine_msvision(a) -> dict:
    t_start = time.perf_counter()
    pipe, load_s = common.load_msvision_pipeline(TASK, a.model_dir, a.threads)
    import msvision

    acc, out = [0.0], {}
    model = pipe.model
    first = time.perf_counter()
    out["r"] = pipe(a.image)
    first_s = time.perf_counter() - first
    model.run = common.timed(model.run, acc)

    def call():
        out["r"] = pipe(a.image)

    e2e, net = common.timed_e2e(call, acc, a.repeats, a.warmup)
    _save(a.out_prefix + ".npz", out["r"])
    x = pipe.preprocess(a.image)["img"]
    np.save(a.out_prefix + "_input.npy", np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    session = model._sessions[0]
    bare = common.time_calls(lambda: session.run([x]), a.repeats, a.warmup)
    return {
        "load_s": load_s,
        "first_result_s": first_s,
        "process_to_first_result_s": time.perf_counter() - t_start - sum(e2e["all"]) - sum(bare),
        "e2e": e2e,
        "net": net,
        "bare": common.summarize(bare),
        "build_info": msvision.build_info(),
    }


class _Raw:
    """ModelScope's backbone -> neck -> head (nms off): the class scores and decoded boxes of every anchor."""

    @staticmethod
    def wrap(net):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return self.m.head(self.m.neck(self.m.backbone(x)))

        return Wrapped(net).eval()


def engine_export(a) -> dict:
    import torch

    pipe = _modelscope(a.model_dir, a.threads)
    pipe(a.image)  # ModelScope's first call puts the model in eval mode
    x = torch.from_numpy(np.load(a.input_npy))
    return common.export_onnx(_Raw.wrap(pipe.model), x, a.onnx, dynamo_order=(False, True))


def engine_onnx_peer(a) -> dict:
    """ONNX Runtime or OpenVINO (``a.engine``, see common.ONNX_PEERS) on the export."""
    x = np.load(a.input_npy)
    peer = common.OnnxPeer(a.engine, a.onnx, a.threads)
    bare = common.time_calls(lambda: peer.run(x), a.repeats, a.warmup)
    return {"load_s": peer.load_s, "bare": common.summarize(bare), "peer": peer.info}


ENGINE_FUNCS = {
    "modelscope": engine_modelscope,
    "msvision": engine_msvision,
    "export": engine_export,
    **{peer: engine_onnx_peer for peer in common.ONNX_PEERS},
}


# ================================================================ orchestration


def run_child(a, engine, work, model_dir, image, hw, extra=()):
    args = ["--engine", engine, "--threads", str(a.threads), "--model-dir", model_dir, "--image", image]
    args += ["--repeats", str(a.repeats), "--warmup", str(a.warmup), "--hw", str(hw[0]), str(hw[1])]
    args += ["--out-prefix", os.path.join(work, engine), *extra]
    return common.run_engine_process(
        __file__, args, os.path.join(work, f"{engine}.json"), a.threads, a.timeout, f"engine {engine}"
    )


def compare(ours_npz, ref_npz) -> str:
    a, b = np.load(ours_npz, allow_pickle=True), np.load(ref_npz, allow_pickle=True)
    if a["boxes"].shape != b["boxes"].shape:
        return f"{len(a['scores'])} vs {len(b['scores'])} detections (shapes {a['boxes'].shape} vs {b['boxes'].shape})"
    n = len(b["scores"])
    if n == 0:
        return "both empty"
    same = (a["labels"] == b["labels"]) & (np.abs(a["boxes"] - b["boxes"]).max(axis=1) <= 1.0)
    d = np.abs(a["scores"] - b["scores"]).max()
    return (
        f"{n} detections, {int(same.sum())} identical in place (label, box ≤ 1 px); max\\|Δ\\| score {d:.1e}"
    )


def run_config(a, variant, width, height):
    work = os.path.join(common.OUT_DIR, "damoyolo", f"{variant}_{width}x{height}")
    os.makedirs(work, exist_ok=True)
    model_dir = model_dir_for(variant, a.no_cache)
    image, image_note = make_image(width, height, work)
    hw = (height, width)
    res = {}
    for eng in ("msvision", "modelscope"):
        print(f"DAMO-YOLO-{variant} {width}x{height} {eng} ...", file=sys.stderr)
        res[eng] = run_child(a, eng, work, model_dir, image, hw)
    onnx = os.path.join(work, "net.onnx")
    inp = os.path.join(work, "msvision_input.npy")
    if a.no_cache or not os.path.isfile(onnx):
        res["export"] = run_child(
            a, "export", work, model_dir, image, hw, ["--onnx", onnx, "--input-npy", inp]
        )
    for peer in common.ONNX_PEERS:
        res[peer] = run_child(a, peer, work, model_dir, image, hw, ["--onnx", onnx, "--input-npy", inp])
    res["check"] = compare(os.path.join(work, "msvision.npz"), os.path.join(work, "modelscope.npz"))
    res["image"] = image_note
    return res


def orchestrate(a) -> None:
    t_start = time.perf_counter()
    configs = []
    for item in a.configs.split(","):
        variant, size = item.split(":")
        w, h = (int(v) for v in size.lower().split("x"))
        configs.append((variant.upper(), w, h))
    lines = [
        "| Model | Input | Engine | Timed | Min (s) | Median (s) | ModelScope ÷ this | ONNX Runtime ÷ this "
        "| this ÷ msvision | GFLOP/s | Peak RSS (MiB) | Load (s) | Check |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    notes = []
    for variant, w, h in configs:
        r = run_config(a, variant, w, h)
        peers = {p: r[p]["peer"] for p in common.ONNX_PEERS}
        ms, ours, ort = r["modelscope"], r["msvision"], r["ort"]
        gflop = ms["flops"] / 1e9
        size = f"{w}×{h} (padded {common.pad_to(w, 32)}×{common.pad_to(h, 32)})"
        rows = [
            ("ModelScope pipeline (torch)", "pipeline", ms["e2e"], ms, "reference", None),
            ("msvision pipeline", "pipeline", ours["e2e"], ours, r["check"], None),
            ("ModelScope `model.forward`", "network", ms["net"], ms, "–", ms["net"]),
            *(
                (common.ONNX_PEER_LABEL[p], "network", r[p]["bare"], r[p], "–", r[p]["bare"])
                for p in common.ONNX_PEERS
            ),
            ("msvision graph", "network", ours["bare"], ours, "–", ours["bare"]),
        ]
        for label, what, t, proc, check, net in rows:
            ref = ms["e2e"]["median"] if what == "pipeline" else ms["net"]["median"]
            ort_ratio = f"{ort['bare']['median'] / t['median']:.2f}×" if what == "network" else "–"
            ours_t = ours["e2e"] if what == "pipeline" else ours["bare"]
            rate = f"{gflop / t['median']:.0f}" if net else "–"
            lines.append(
                f"| DAMO-YOLO-{variant} | {size} | {label} | {what} | {common.fmt_s(t['min'])} | "
                f"{common.fmt_s(t['median'])} | {ref / t['median']:.2f}× | {ort_ratio} | "
                f"{t['median'] / ours_t['median']:.2f}× | {rate} | "
                f"{proc['peak_rss_mib']:.0f} | {proc['load_s']:.2f} | {check} |"
            )
        notes.append(
            f"DAMO-YOLO-{variant} {w}×{h}: {gflop:.1f} GFLOP of convolutions; {r['image']}; msvision load "
            f"{ours['load_s']:.2f} s, first result {ours['first_result_s']:.2f} s (planning included)"
        )
    m = common.machine_info()
    vers = common.package_versions(
        ["torch", "onnxruntime", "openvino", "modelscope", "numpy", "opencv-python-headless"]
    )
    command = "python3 " + " ".join(shlex.quote(x) for x in sys.argv)
    header = [
        f"## DAMO-YOLO object detection — {common.now_utc()}" + (f" — {a.label}" if a.label else ""),
        "",
        f"- Command: `{command}`",
        f"- Machine: {m['cpu_model']} ({m['cpus']} CPUs, AVX-512 {'yes' if m['avx512'] else 'no'}); {m['os']}; "
        f"Python {m['python']}; load average at end {common.load_average()}",
        f"- Threads: {a.threads} for every engine; {a.warmup} warm-up + {a.repeats} timed runs each, each engine "
        "in its own process; OpenVINO: CPU plugin, latency hint, one stream, INFERENCE_NUM_THREADS; 'OpenVINO "
        "default' leaves the inference precision at the plugin's default",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        "- Models: DAMO-YOLO S (TinyNAS_res L25) and M (TinyNAS_csp L35) with random weights from ModelScope's own "
        "builders, calibrated as the tests build them; 5 classes, nms_conf_thre 0.5, nms_iou_thre 0.7",
        "- GFLOP/s: the network's convolution FLOPs (RepConvs folded) ÷ its median time",
    ]
    header += [f"- {n}" for n in notes]
    header += [
        f"- {common.ONNX_PEER_LABEL[p]}: {v['version']}, inference precision {v['precision']}"
        for p, v in peers.items()
    ]
    header.append(f"- Whole run: {time.perf_counter() - t_start:.0f} s wall")
    report = "\n".join(header) + "\n\n" + "\n".join(lines) + "\n"
    print(report)
    if not a.no_write:
        with open(a.results, "a") as f:
            f.write(report + "\n")
        print(f"appended to {a.results}", file=sys.stderr)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default="S:640x640,S:1280x720,M:640x640", help="VARIANT:WxH,...")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--results", default=os.path.join(common.BENCH_DIR, "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--label", default="")
    ap.add_argument("--no-cache", action="store_true", help="rebuild the random models and re-export ONNX")
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--engine", choices=sorted(ENGINE_FUNCS), help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--hw", type=int, nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    ap.add_argument("--out-prefix", help=argparse.SUPPRESS)
    ap.add_argument("--onnx", help=argparse.SUPPRESS)
    ap.add_argument("--input-npy", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.threads < 1 or a.repeats < 1 or a.warmup < 0:
        ap.error("--threads and --repeats must be >= 1, --warmup >= 0")
    if a.engine:
        common.engine_main(ENGINE_FUNCS, a)
    else:
        orchestrate(a)


if __name__ == "__main__":
    main()
