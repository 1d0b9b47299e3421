"""Face detection (ULFD, MTCNN, RetinaFace): ModelScope's pipeline, msvision's, ONNX Runtime and OpenVINO on the
same model directory and photo, same threads, each engine in its own process.

Models: the real ULFD and MTCNN weights in ../shared/assets; RetinaFace-R50 (no released weights here) with seeded
random weights from ModelScope's own class, calibrated on the astronaut photo as tests/models/test_retinaface.py
builds them, written once to benchmarks/out/retinaface_random (MogFace is the mogface case).

The pipelines are timed whole (image file in, result dict out), and so is the time spent inside their networks.
The networks alone: during one msvision call every network call is recorded (which network, its input tensor);
``networks replay`` then times that sequence of calls on msvision's networks and, for the ONNX peers, on an ONNX
export of ModelScope's own torch module of each network at each recorded shape (static shapes: MTCNN's P-Net once
per pyramid level, R-Net/O-Net at msvision's batch sizes). The peers' outputs are checked against the torch
modules' on the same inputs.

    python3 benchmarks/run.py face_detection --threads 2 [--models ULFD,MTCNN,RetinaFace] [--results FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
import common  # noqa: E402

SHARED = os.environ.get("MSVISION_SHARED") or os.path.join(common.REPO_ROOT, "..", "shared")
MODELS = {
    "ULFD": os.path.join(SHARED, "assets", "modelscope", "damo", "cv_manual_face-detection_ulfd"),
    "MTCNN": os.path.join(SHARED, "assets", "modelscope", "damo", "cv_manual_face-detection_mtcnn"),
}
PHOTOS = ["office1.jpg", "ulfd_11.jpg"]
ENGINES = ("modelscope", "msvision", *common.ONNX_PEERS)

# msvision's network classes -> the name of the same network in ModelScope's detector
MSVISION_NETWORK = {
    "UlfdDetector": "net",
    "RetinaFace": "net",
    "PNet": "pnet",
    "RNet": "rnet",
    "ONet": "onet",
}


def retinaface_dir() -> str:
    """benchmarks/out/retinaface_random: ModelScope's RetinaFace, seed 0, calibrated on the astronaut photo."""

    def build(dest):
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


def torch_networks(pipe) -> dict:
    """ModelScope's torch modules of a face-detection pipeline, by network name."""
    d = pipe.detector
    if hasattr(d, "pnet"):
        return {"pnet": d.pnet, "rnet": d.rnet, "onet": d.onet}
    return {"net": d.net}


def onnx_path(onnx_dir: str, network: str, shape) -> str:
    return os.path.join(onnx_dir, f"{network}_{'x'.join(map(str, shape))}.onnx")


def load_calls(path: str) -> list:
    """The recorded network calls: [(network name, NCHW float32 input), ...] in call order."""
    with np.load(path) as z:
        names = [str(n) for n in z["names"]]
        return [(name, z[f"x{i}"]) for i, name in enumerate(names)]


def _flat(outputs) -> list:
    if isinstance(outputs, (list, tuple)):
        return [a for o in outputs for a in _flat(o)]
    return [outputs.detach().numpy() if hasattr(outputs, "detach") else np.asarray(outputs)]


# ================================================================ engines (one per process)


def engine_modelscope(a) -> dict:
    pipe, load_s = common.load_modelscope_pipeline("face-detection", a.model_dir, a.threads)
    acc, out = [0.0], {}
    for net in torch_networks(pipe).values():
        net.forward = common.timed(net.forward, acc)

    def call():
        out["r"] = pipe(a.photo)

    e2e, net = common.timed_e2e(call, acc, a.repeats, a.warmup)
    return {"load_s": load_s, "e2e": e2e, "net": net, **_detections(out["r"])}


def _detections(result: dict) -> dict:
    return {"faces": len(result["scores"]), "boxes": [list(map(float, b)) for b in result["boxes"]]}


def engine_msvision(a) -> dict:
    precision = "bf16" if a.engine == "msvision_bf16" else "fp32"
    pipe, load_s = common.load_msvision_pipeline("face-detection", a.model_dir, a.threads, precision)
    import msvision
    from msvision.models.base import Model

    acc, out, calls = [0.0], {}, []
    inner_run = Model.run

    def run(self, *inputs):  # times every network call and records those of the current pipeline call
        calls.append((self, inputs))
        t0 = time.perf_counter()
        r = inner_run(self, *inputs)
        acc[0] += time.perf_counter() - t0
        return r

    def call():
        calls.clear()
        out["r"] = pipe(a.photo)

    Model.run = run
    e2e, net = common.timed_e2e(call, acc, a.repeats, a.warmup)
    Model.run = inner_run  # calls now holds the network calls of the last timed call
    names = [MSVISION_NETWORK[type(m).__name__] for m, _ in calls]
    np.savez(
        a.out_prefix + "_calls.npz",
        names=np.array(names),
        **{
            f"x{i}": np.ascontiguousarray(inputs[0].transpose(0, 3, 1, 2))
            for i, (_, inputs) in enumerate(calls)
        },
    )

    def replay():
        for model, inputs in calls:
            model.run(*inputs)

    bare = common.time_calls(replay, a.repeats, a.warmup)
    return {
        "load_s": load_s,
        "e2e": e2e,
        "net": net,
        "bare": common.summarize(bare),
        "network_calls": len(calls),
        "build_info": msvision.build_info(),
        **_detections(out["r"]),
    }


def engine_export(a) -> dict:
    """torch.onnx.export of ModelScope's torch module of every recorded (network, shape), and the torch modules'
    outputs on the recorded inputs (what the peers' outputs are checked against)."""
    import torch

    pipe, _ = common.load_modelscope_pipeline("face-detection", a.model_dir, a.threads)
    networks = {name: net.eval() for name, net in torch_networks(pipe).items()}
    calls = load_calls(a.calls)
    os.makedirs(a.onnx_dir, exist_ok=True)
    exported, reference = [], {}
    with torch.no_grad():
        for i, (name, x) in enumerate(calls):
            path = onnx_path(a.onnx_dir, name, x.shape)
            if not os.path.isfile(path):
                common.export_onnx(networks[name], torch.from_numpy(x), path, dynamo_order=(False, True))
                exported.append(os.path.basename(path))
            for j, o in enumerate(_flat(networks[name](torch.from_numpy(x)))):
                reference[f"c{i}_o{j}"] = o
    np.savez(a.out_prefix + "_reference.npz", **reference)
    return {"exported": exported}


def engine_onnx_peer(a) -> dict:
    """ONNX Runtime or OpenVINO (``a.engine``, see common.ONNX_PEERS) replaying the recorded network calls."""
    calls = load_calls(a.calls)
    t0 = time.perf_counter()
    peers = {}
    for name, x in calls:
        path = onnx_path(a.onnx_dir, name, x.shape)
        if path not in peers:
            peers[path] = common.OnnxPeer(a.engine, path, a.threads)
    load_s = time.perf_counter() - t0
    runs = [(peers[onnx_path(a.onnx_dir, name, x.shape)].run, x) for name, x in calls]
    out = {}

    def replay():
        out["outputs"] = [run(x) for run, x in runs]

    bare = common.time_calls(replay, a.repeats, a.warmup)
    with np.load(a.reference) as ref:
        worst = max(
            float(np.max(np.abs(np.asarray(o) - ref[f"c{i}_o{j}"])))
            for i, outputs in enumerate(out["outputs"])
            for j, o in enumerate(outputs)
        )
    return {
        "load_s": load_s,
        "bare": common.summarize(bare),
        "max_abs_vs_torch": worst,
        "peer": next(iter(peers.values())).info,
    }


ENGINE_FUNCS = {
    "modelscope": engine_modelscope,
    "msvision": engine_msvision,
    "msvision_bf16": engine_msvision,
    "export": engine_export,
    **{peer: engine_onnx_peer for peer in common.ONNX_PEERS},
}


# ================================================================ orchestration


def run_child(a, engine: str, model_dir: str, photo: str, work: str, onnx_dir: str) -> dict:
    args = ["--engine", engine, "--threads", str(a.threads), "--model-dir", model_dir, "--photo", photo]
    args += ["--repeats", str(a.repeats), "--warmup", str(a.warmup), "--onnx-dir", onnx_dir]
    args += ["--out-prefix", os.path.join(work, engine)]
    args += ["--calls", os.path.join(work, "msvision_calls.npz")]  # the fp32 engine's (it runs first)
    args += ["--reference", os.path.join(work, "export_reference.npz")]
    return common.run_engine_process(
        __file__, args, os.path.join(work, f"{engine}.json"), a.threads, a.timeout, f"engine {engine}"
    )


def _max_box_diff(ms: dict, mv: dict) -> str:
    if ms["faces"] != mv["faces"]:
        return "faces differ"
    diffs = [max(abs(p - q) for p, q in zip(b1, b2)) for b1, b2 in zip(ms["boxes"], mv["boxes"])]
    return f"{max(diffs, default=0.0):.2g} px"


def ms(x: float) -> str:
    return f"{x * 1e3:.1f}"


BF16_MODELS = (
    "RetinaFace",
)  # the face detectors that take precision="bf16" (tests/models/test_precision.py)


def replay_ratio(res: dict, peer: str, ours: dict) -> str:
    """``peer``'s replay time over ``ours`` (above 1: ours is faster)."""
    return f"{res[peer]['bare']['median'] / ours['bare']['median']:.2f}×"


def orchestrate(a) -> None:
    t_start = time.perf_counter()
    models = dict(MODELS)
    wanted = a.models.split(",")
    unknown = set(wanted) - {"ULFD", "MTCNN", "RetinaFace"}
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; choose from ULFD, MTCNN, RetinaFace")
    if "RetinaFace" in wanted:
        models["RetinaFace"] = retinaface_dir()
    rows, notes, cold, peer_info = [], [], [], {}
    bf16 = common.msvision_bf16_available()
    if not bf16 and set(wanted) & set(BF16_MODELS):
        notes.append(common.BF16_NOT_RUN)
    for name in wanted:
        model_dir = os.path.abspath(models[name])
        onnx_dir = os.path.join(common.OUT_DIR, "face_detection", "onnx", name)
        for photo_name in PHOTOS:
            photo = os.path.join(SHARED, "assets", "images", "faces", photo_name)
            work = os.path.join(common.OUT_DIR, "face_detection", name, photo_name.split(".")[0])
            os.makedirs(work, exist_ok=True)
            res = {}
            engines = ["msvision", "modelscope", "export", *common.ONNX_PEERS]
            if name in BF16_MODELS and bf16:
                engines.insert(1, "msvision_bf16")
            for engine in engines:
                print(f"{name} {photo_name}: {engine} ...", file=sys.stderr)
                res[engine] = run_child(a, engine, model_dir, photo, work, onnx_dir)
            mv, mscope = res["msvision"], res["modelscope"]
            if "msvision_bf16" in res:
                b = res["msvision_bf16"]
                notes.append(
                    f"{name} {photo_name}: msvision bf16 (opt-in): pipeline {ms(b['e2e']['median'])} ms "
                    f"({mscope['e2e']['median'] / b['e2e']['median']:.2f}× ModelScope, "
                    f"{mv['e2e']['median'] / b['e2e']['median']:.2f}× msvision fp32), network replay "
                    f"{ms(b['bare']['median'])} ms (OpenVINO default ÷ this: {replay_ratio(res, 'ov_default', b)}); "
                    f"faces {b['faces']} vs ModelScope {mscope['faces']}"
                )
            replay = {e: res[e]["bare"]["median"] for e in ("msvision", *common.ONNX_PEERS)}
            fp32_peers = [e for e in common.ONNX_PEERS if res[e]["peer"]["precision"] == "f32"]
            best_fp32 = min(fp32_peers, key=lambda e: replay[e])
            rows.append(
                f"| {name} | {photo_name} | {mscope['faces']} / {mv['faces']} | {_max_box_diff(mscope, mv)} | "
                f"{ms(mscope['e2e']['median'])} | {ms(mv['e2e']['median'])} | "
                f"{mscope['e2e']['median'] / mv['e2e']['median']:.2f}× | "
                f"{ms(mscope['net']['median'])} / {ms(mv['net']['median'])} | {mv['network_calls']} | "
                f"{ms(replay['msvision'])} | "
                + " | ".join(ms(replay[e]) for e in common.ONNX_PEERS)
                + f" | {replay[best_fp32] / replay['msvision']:.2f}× ({common.ONNX_PEER_LABEL[best_fp32]}) | "
                f"{replay['ov_default'] / replay['msvision']:.2f}× | "
                f"{mscope['peak_rss_mib']:.0f} / {mv['peak_rss_mib']:.0f} |"
            )
            for e in common.ONNX_PEERS:
                peer_info[e] = res[e]["peer"]
                notes.append(
                    f"{name} {photo_name}: {common.ONNX_PEER_LABEL[e]} outputs vs ModelScope's torch modules, "
                    f"max abs {res[e]['max_abs_vs_torch']:.2g}"
                )
            if photo_name == PHOTOS[0]:
                for engine in ("msvision", "modelscope"):
                    c = common.cold_start(engine, "face-detection", model_dir, photo, a.threads)
                    cold.append(
                        f"- Cold start of {engine}'s {name} pipeline on {photo_name}: {common.fmt_cold(c)}"
                    )
    machine = common.machine_info()
    versions = common.package_versions(["torch", "modelscope", "onnxruntime", "openvino", "numpy"])
    peers = "; ".join(
        f"{common.ONNX_PEER_LABEL[e]}: {i['version']}, {i['precision']}" for e, i in peer_info.items()
    )
    header = [
        f"## Face detection ({a.models}) — {common.now_utc()}",
        "",
        f"- Command: `python3 benchmarks/run.py face_detection --threads {a.threads} --repeats {a.repeats} "
        f"--models {a.models}`",
        f"- Machine: {machine['cpu_model']}, {machine['cpus']} CPUs; load average at end {common.load_average()}",
        f"- Threads: {a.threads} for every engine; {a.warmup} warm-up + {a.repeats} timed calls (medians), each "
        "engine in its own process",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}; peers: {peers}",
        "- Models: ULFD and MTCNN with the released weights (../shared/assets); RetinaFace-R50 with seeded random "
        "weights from ModelScope's class, calibrated on the astronaut (benchmarks/out/retinaface_random)",
        "- Pipeline columns: the whole call (photo file in, result out) and the seconds inside its networks; "
        "networks replay: the network calls of one msvision call (their count in the calls column), replayed on "
        "msvision's networks and on ONNX exports of ModelScope's torch modules at the same shapes",
        *[f"- {n}" for n in notes],
        *cold,
        f"- Whole run: {time.perf_counter() - t_start:.0f} s wall",
    ]
    peer_cols = " | ".join(f"{common.ONNX_PEER_LABEL[e]} ms" for e in common.ONNX_PEERS)
    table = [
        "| model | photo | faces ModelScope / msvision | max box diff | ModelScope ms | msvision ms | speed-up | "
        f"in networks ms (MS / msv) | calls | replay: msvision ms | {peer_cols} | best fp32 peer ÷ msvision | "
        "OpenVINO default ÷ msvision | "
        "peak RSS MiB (MS / msv) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|"
        + "---:|" * len(common.ONNX_PEERS)
        + "---|---:|---:|",
        *rows,
    ]
    report = "\n".join(header) + "\n\n" + "\n".join(table) + "\n"
    print(report)
    if not a.no_write:
        with open(a.results, "a") as f:  # append only: other benchmarks write their own sections
            f.write("\n" + report)
        print(f"appended to {a.results}", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per engine (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    ap.add_argument("--models", default="ULFD,MTCNN,RetinaFace", help="comma-separated subset")
    ap.add_argument("--results", default=os.path.join(common.BENCH_DIR, "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per engine subprocess")
    # internal: one engine in this process
    ap.add_argument("--engine", choices=sorted(ENGINE_FUNCS), help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--photo", help=argparse.SUPPRESS)
    ap.add_argument("--onnx-dir", help=argparse.SUPPRESS)
    ap.add_argument("--out-prefix", help=argparse.SUPPRESS)
    ap.add_argument("--calls", help=argparse.SUPPRESS)
    ap.add_argument("--reference", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.threads < 1 or a.repeats < 1 or a.warmup < 0:
        ap.error("--threads and --repeats must be >= 1, --warmup >= 0")
    if a.engine:
        common.engine_main(ENGINE_FUNCS, a)
    else:
        orchestrate(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
