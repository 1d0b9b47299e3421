#!/usr/bin/env python3
"""NAFNet image denoising, end to end: ModelScope's pipeline (torch) vs msvision vs ONNX Runtime and OpenVINO.

    python3 benchmarks/run.py nafnet --threads 2 [--sizes 512,1024] [--repeats 5] [--model-dir DIR]

Every engine runs in its own subprocess (this script re-invoked with ``--engine X``) with the same thread
count (torch.set_num_threads / ORT intra_op_num_threads / msvision ``threads=``, and OMP_NUM_THREADS), on the
same model directory and the same PNG, so peak RSS is attributable. Per image size it reports:

* end-to-end latency of ``pipeline('image-denoising', model=dir)(png_path)`` (decode, to float, 512 px tiles
  with 16 px overlap, network, to uint8 BGR): min and median of ``--repeats`` calls after ``--warmup`` calls.
  ONNX Runtime and OpenVINO (CPU plugin, latency hint, once forced to fp32 and once with its defaults, bf16 on
  this CPU) run the same pre/post-processing in numpy around their inference call on a ``torch.onnx.export`` of
  ModelScope's own NAFNet module (opset 17, fixed shape = the tile shape);
* the bare network time, timed around the network calls inside those end-to-end calls and summed over the
  tiles: msvision ``p.model.run(x)`` on the padded tile, ORT ``session.run`` on the tile,
  ModelScope ``model._inference_forward(tile)`` (NAFNet + clamp);
* conv FLOPs of the tiles the pipeline really runs (padded), achieved GFLOP/s and share of the fp32 peak;
* peak RSS of each engine's process and the output check against ModelScope;
* cold start: import + load + first result of msvision's and ModelScope's pipelines, each in a fresh process.

Without ``--model-dir`` a SIDD-configured NAFNet (width 32, enc [2,2,4,8], middle 12, dec [2,2,2,2]) with
seeded random weights is written to benchmarks/out/ as configuration.json + pytorch_model.pt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
import common  # noqa: E402

TASK = "image-denoising"
SIDD_NET = {  # model.network_g; ModelScope passes it as NAFNet(**network_g), so no "type" key
    "img_channel": 3,
    "width": 32,
    "enc_blk_nums": [2, 2, 4, 8],
    "middle_blk_num": 12,
    "dec_blk_nums": [2, 2, 2, 2],
}
ENGINES = ("msvision", "msvision_bf16", "modelscope", *common.ONNX_PEERS)
SLOW_ENGINES = ("modelscope", "ort", "ov_f32")  # get --slow-repeats timed runs at sizes >= --slow-size
LABEL = {
    "msvision": "msvision",
    "msvision_bf16": "msvision bf16 (opt-in)",
    "modelscope": "ModelScope (torch)",
    **common.ONNX_PEER_LABEL,
}


# ================================================================ model directory


def build_model_dir(dest: str, seed: int = 0) -> str:
    """ModelScope's NAFNet in the SIDD configuration with seeded random weights (tests/support/model_dirs.py:
    LayerNorm and the blocks' beta/gamma, which initialise to identity, are perturbed so every block contributes)."""
    return common.use_test_fixtures().make_nafnet_dir(dest, SIDD_NET, seed=seed)


def network_settings(model_dir: str) -> dict:
    with open(os.path.join(model_dir, "configuration.json")) as f:
        return dict(json.load(f)["model"]["network_g"])


# ================================================================ engines (each in its own subprocess)


def _read_rgb(path: str) -> np.ndarray:
    """ModelScope's load_image: PIL, EXIF orientation applied, converted to RGB."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def engine_msvision(a) -> dict:
    precision = "bf16" if a.engine == "msvision_bf16" else "fp32"
    p, load_s = common.load_msvision_pipeline(TASK, a.model_dir, a.threads, precision)
    import msvision

    rss_loaded = common.current_rss_mib()
    # NAFNet.restore pads each tile and calls self.run(x): time exactly that call
    acc, out = [0.0], {}
    p.model.run = common.timed(p.model.run, acc)

    def call():
        out["img"] = p(a.image)["output_img"]

    e2e, net = common.timed_e2e(call, acc, a.repeats, a.warmup)
    np.save(a.npy_out, out["img"])
    return {
        "load_s": load_s,
        "e2e": e2e,
        "net": net,
        "net_how": "p.model.run(padded tile), summed over tiles",
        "rss_after_load_mib": rss_loaded,
        "build_info": msvision.build_info(),
        "version": msvision.__version__,
    }


def engine_modelscope(a) -> dict:
    pipe, load_s = common.load_modelscope_pipeline(TASK, a.model_dir, a.threads)
    import torch

    rss_loaded = common.current_rss_mib()
    # ModelScope's crop_process calls model._inference_forward (NAFNet + clamp) once per tile
    acc, out = [0.0], {}
    pipe.model._inference_forward = common.timed(pipe.model._inference_forward, acc)

    def call():
        out["img"] = pipe(a.image)["output_img"]

    e2e, net = common.timed_e2e(call, acc, a.repeats, a.warmup)
    np.save(a.npy_out, np.ascontiguousarray(out["img"]))
    return {
        "load_s": load_s,
        "e2e": e2e,
        "net": net,
        "net_how": "model._inference_forward(tile), summed over tiles",
        "rss_after_load_mib": rss_loaded,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }


def onnx_path(onnx_dir: str, h: int, w: int) -> str:
    return os.path.join(onnx_dir, f"nafnet_{h}x{w}.onnx")


def engine_export(a) -> dict:
    """torch.onnx.export of ModelScope's NAFNet module (+ the clamp of _inference_forward), one file per tile
    shape of the image; dynamo exporter first, the TorchScript one if that fails."""
    common.use_torchvision_stub()
    import torch
    from modelscope.models.cv.image_denoise import NAFNetForImageDenoise

    torch.set_num_threads(a.threads)
    net = NAFNetForImageDenoise(a.model_dir).model.eval()

    class Clamped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x).clamp(0, 1)

    wrapped = Clamped(net).eval()
    rgb = _read_rgb(a.image)
    shapes = sorted(set(common.tile_shapes(*rgb.shape[:2])))
    os.makedirs(a.onnx_dir, exist_ok=True)
    report = {"files": [], "errors": []}
    t0 = time.perf_counter()
    for h, w in shapes:
        path = onnx_path(a.onnx_dir, h, w)
        if os.path.isfile(path):  # the directory is keyed by the weights file, config and torch version
            report["files"].append(
                {"shape": [h, w], "path": path, "exporter": "cached", "bytes": os.path.getsize(path)}
            )
            continue
        done = common.export_onnx(
            wrapped, torch.rand(1, 3, h, w), path, input_names=["img"], output_names=["out"]
        )
        report["errors"] += [f"{h}x{w} {e}" for e in done["errors"]]
        report["files"].append(
            {"shape": [h, w], "path": path, "exporter": done["exporter"], "bytes": os.path.getsize(path)}
        )
    report["export_s"] = time.perf_counter() - t0
    return report


def engine_onnx_peer(a) -> dict:
    """ONNX Runtime or OpenVINO (``a.engine``, see common.ONNX_PEERS) on the exports, one per tile shape."""
    rgb = _read_rgb(a.image)
    sessions = {}
    for h, w in sorted(set(common.tile_shapes(*rgb.shape[:2]))):
        sessions[(h, w)] = common.OnnxPeer(a.engine, onnx_path(a.onnx_dir, h, w), a.threads)
    load_s = sum(s.load_s for s in sessions.values())
    rss_loaded = common.current_rss_mib()
    acc = [0.0]  # inference seconds: the exported graph pads internally; 512 / 528 px tiles need no padding

    def run_pipeline(path: str) -> np.ndarray:
        rgb = _read_rgb(path)
        img = rgb.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)  # as ToTensor
        out = np.zeros_like(img)
        for (sy, sx), (dy, dx), (ry, rx) in common.tile_plan(*img.shape[2:]):
            tile = np.ascontiguousarray(img[:, :, sy, sx])
            t0 = time.perf_counter()
            res = sessions[tile.shape[2:]].run(tile)[0]
            acc[0] += time.perf_counter() - t0
            out[:, :, dy, dx] = res[:, :, ry, rx]
        res = (out[0] * np.float32(255)).transpose(1, 2, 0).astype(np.uint8)
        return np.ascontiguousarray(res[:, :, ::-1])

    out = {}

    def call():
        out["img"] = run_pipeline(a.image)

    e2e, net = common.timed_e2e(call, acc, a.repeats, a.warmup)
    np.save(a.npy_out, out["img"])
    return {
        "load_s": load_s,
        "e2e": e2e,
        "net": net,
        "net_how": "the inference call on the tile, summed over tiles",
        "rss_after_load_mib": rss_loaded,
        "peer": next(iter(sessions.values())).info,
    }


ENGINE_FUNCS = {
    "msvision": engine_msvision,
    "msvision_bf16": engine_msvision,
    "modelscope": engine_modelscope,
    **{peer: engine_onnx_peer for peer in common.ONNX_PEERS},
    "export": engine_export,
}


def engine_main(a) -> None:
    common.engine_main(ENGINE_FUNCS, a)


# ================================================================ orchestration


def run_child(a, engine: str, image: str, size: int, repeats: int, work: str) -> dict:
    args = ["--engine", engine, "--threads", str(a.threads), "--model-dir", a.model_dir, "--image", image]
    args += ["--repeats", str(repeats), "--warmup", str(a.warmup), "--onnx-dir", a.onnx_dir]
    args += ["--npy-out", os.path.join(work, f"{engine}_{size}.npy")]
    json_out = os.path.join(work, f"{engine}_{size}.json")
    return common.run_engine_process(
        __file__, args, json_out, a.threads, a.timeout, f"engine {engine} at {size}px"
    )


def make_table(a, rows: list[dict], peak: float) -> str:
    lines = [
        "| Image | Tiles (padded) | Conv GFLOP | Engine | Runs | E2E min (s) | E2E median (s) "
        "| E2E ÷ msvision | Net median (s) | Net ÷ msvision | Net GFLOP/s | % of fp32 peak | Peak RSS (MiB) "
        "| Load (s) | Output vs ModelScope |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        size, gflop, res = r["size"], r["gflop"], r["results"]
        ms = res.get("msvision")
        first = True
        for eng in ENGINES:
            if eng not in res:
                continue
            e = res[eng]
            e2e_med, net_med = e["e2e"]["median"], e["net"]["median"]
            ratio = f"{e2e_med / ms['e2e']['median']:.2f}×" if ms else "–"
            net_ratio = f"{net_med / ms['net']['median']:.2f}×" if ms else "–"
            gfs = gflop / net_med
            runs = f"{a.warmup}+{e['e2e']['n']}"
            if e["e2e"]["n"] != a.repeats:
                runs += " (fewer: slow peer)"
            if eng == "modelscope":
                check = "reference"
            elif "check" in e and "error" not in e["check"]:
                c = e["check"]
                check = (
                    f"max\\|Δ\\| {c['max_abs_diff']}, {c['identical_pixels_pct']:.3f}% identical px "
                    f"({c['differing_pixels']} differ)"
                )
            else:
                check = e.get("check", {}).get("error", "–")
            lines.append(
                "| "
                + " | ".join(
                    [
                        f"{size}×{size}" if first else "",
                        r["tiles"] if first else "",
                        f"{gflop:.1f}" if first else "",
                        LABEL[eng],
                        runs,
                        common.fmt_s(e["e2e"]["min"]),
                        common.fmt_s(e2e_med),
                        ratio,
                        common.fmt_s(net_med),
                        net_ratio,
                        f"{gfs:.1f}",
                        f"{100 * gfs / peak:.1f}%",
                        f"{e['peak_rss_mib']:.0f}",
                        f"{e['load_s']:.2f}",
                        check,
                    ]
                )
                + " |"
            )
            first = False
    return "\n".join(lines)


def onnx_cache_dir(model_dir: str, work: str) -> str:
    """ONNX exports are reused while the weights file, the configuration and torch are unchanged."""
    h = hashlib.sha1(os.path.realpath(model_dir).encode())
    for name in ("pytorch_model.pt", "configuration.json"):
        st = os.stat(os.path.join(model_dir, name))
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(common.package_versions(["torch"])["torch"].encode())
    return os.path.join(work, "onnx", h.hexdigest()[:16])


def orchestrate(a) -> None:
    t_start = time.perf_counter()
    work = os.path.join(common.OUT_DIR, "nafnet")
    os.makedirs(work, exist_ok=True)
    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ENGINES:
            sys.exit(f"unknown engine {e!r}; choose from {', '.join(ENGINES)}")
    bf16_skipped = "msvision_bf16" in engines and not common.msvision_bf16_available()
    if bf16_skipped:
        engines.remove("msvision_bf16")
    model_note = a.model_dir
    if a.model_dir is None:
        recipe = {
            "seed": a.seed,
            "network_g": SIDD_NET,
            "builder": "tests/support/model_dirs.make_nafnet_dir",
        }
        a.model_dir = common.cached_model_dir(
            "nafnet_sidd_random", recipe, lambda d: build_model_dir(d, seed=a.seed), a.no_cache
        )
        model_note = (
            "ModelScope NAFNet, SIDD config (width 32, enc [2,2,4,8], middle 12, dec [2,2,2,2]), "
            f"random weights (seed {a.seed}, LayerNorm and beta/gamma perturbed), built in benchmarks/out/"
        )
    a.model_dir = os.path.abspath(a.model_dir)
    net_cfg = network_settings(a.model_dir)
    a.onnx_dir = onnx_cache_dir(a.model_dir, work)
    if a.no_cache and os.path.isdir(a.onnx_dir):
        shutil.rmtree(a.onnx_dir)
    multiple = 2 ** len(net_cfg.get("enc_blk_nums", []))
    peak = common.PEAK_GFLOPS_PER_THREAD * a.threads

    rows, images, notes = [], [], []
    build_info, peers = None, {}
    for size in [int(s) for s in a.sizes.split(",") if s.strip()]:
        image, what = common.make_test_image(size, os.path.join(work, "images"))
        images.append(f"{size}: {what}")
        shapes = common.tile_shapes(size, size)
        padded = [(common.pad_to(h, multiple), common.pad_to(w, multiple)) for h, w in shapes]
        flops = sum(common.nafnet_conv_flops(net_cfg, h, w) for h, w in shapes)
        desc = {}
        for hw in padded:
            desc[hw] = desc.get(hw, 0) + 1
        tiles = ", ".join(f"{n}×{h}×{w}" for (h, w), n in desc.items())
        results = {}
        for eng in engines:
            if eng in common.ONNX_PEERS and not any(e in results for e in common.ONNX_PEERS):
                files = [onnx_path(a.onnx_dir, h, w) for h, w in sorted(set(shapes))]
                if all(os.path.isfile(f) for f in files):
                    exp = {"export_s": 0.0, "errors": [], "files": []}
                    exp["files"] = [{"exporter": "cached", "bytes": os.path.getsize(f)} for f in files]
                else:
                    print(f"[{size}px] exporting ONNX ...", file=sys.stderr)
                    exp = run_child(a, "export", image, size, 1, work)
                used = sorted({f["exporter"] for f in exp["files"]})
                notes.append(
                    f"{size}px ONNX export (opset 17, fixed tile shape): {', '.join(used)}, "
                    f"{exp['export_s']:.1f} s, "
                    f"{sum(f['bytes'] for f in exp['files']) / 2**20:.0f} MiB"
                    + (f"; failures before fallback: {' | '.join(exp['errors'])}" if exp["errors"] else "")
                )
            reps = a.repeats
            if eng in SLOW_ENGINES and a.slow_repeats and size >= a.slow_size:
                reps = min(reps, a.slow_repeats)
            print(f"[{size}px] {eng}: {a.warmup}+{reps} runs ...", file=sys.stderr)
            results[eng] = run_child(a, eng, image, size, reps, work)
            e = results[eng]
            print(
                f"[{size}px] {eng}: e2e median {e['e2e']['median']:.3f} s,"
                f" net median {e['net']['median']:.3f} s, peak RSS {e['peak_rss_mib']:.0f} MiB"
                f" ({e['wall_s']:.0f} s wall)",
                file=sys.stderr,
            )
            build_info = e.get("build_info", build_info)
            if "peer" in e:
                peers[eng] = e["peer"]
        if "modelscope" in results:
            ref = np.load(os.path.join(work, f"modelscope_{size}.npy"))
            clipped = 100.0 * np.mean((ref == 0) | (ref == 255))
            notes.append(f"{size}px ModelScope output: {clipped:.1f}% of values at 0 or 255 (clamped)")
            for eng in results:
                if eng != "modelscope":
                    results[eng]["check"] = common.compare_uint8(
                        np.load(os.path.join(work, f"{eng}_{size}.npy")), ref
                    )
        rows.append({"size": size, "tiles": tiles, "gflop": flops / 1e9, "results": results})

    table = make_table(a, rows, peak)
    for size in [int(s) for s in a.cold_start.split(",") if s.strip()]:
        image, _ = common.make_test_image(size, os.path.join(work, "images"))
        for eng in ("msvision", "modelscope"):
            if eng in engines:
                print(f"cold start {eng} at {size} px ...", file=sys.stderr)
                res = common.cold_start(eng, TASK, a.model_dir, image, a.threads)
                notes.append(f"Cold start of {LABEL[eng]} ({size} px image): {common.fmt_cold(res)}")
    if build_info is None:
        common.use_repo_msvision()
        import msvision

        build_info = msvision.build_info()
    m = common.machine_info()
    vers = common.package_versions(
        ["torch", "onnxruntime", "openvino", "onnx", "onnxscript", "modelscope", "numpy"]
    )
    command = "python3 " + " ".join(shlex.quote(x) for x in sys.argv)
    header = [
        f"## NAFNet image denoising — {common.now_utc()}" + (f" — {a.label}" if a.label else ""),
        "",
        f"- Command: `{command}`",
        f"- Machine: {m['cpu_model']} ({m['hypervisor'] + ' guest, ' if m['hypervisor'] else ''}"
        f"{m['cpus']} CPUs, {m['cores_per_socket']} cores/socket × {m['sockets']} socket, "
        f"{m['threads_per_core']} thread/core, AVX-512 {'yes' if m['avx512'] else 'no'}); {m['os']}; "
        f"Python {m['python']}; load average at end {common.load_average()}",
        f"- Threads: {a.threads} for every engine (torch.set_num_threads, ORT intra_op_num_threads with "
        f"inter_op 1, OpenVINO INFERENCE_NUM_THREADS with one stream and the latency hint, msvision "
        f"`threads=`; OMP_NUM_THREADS={a.threads})",
        f"- msvision.build_info(): `{build_info}`",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        f"- Model: {model_note}",
        "- Images: " + "; ".join(images),
        f"- fp32 peak: {common.PEAK_GFLOPS_PER_THREAD:.0f} GFLOP/s per thread × {a.threads} = "
        f"{peak:.0f} GFLOP/s (Zen 4: 230 GFLOP/s for 2 cores, AVX2 or AVX-512)",
        "- E2E: `pipeline('image-denoising', model=dir)(png_path)` → uint8 BGR, min / median of the timed "
        "runs after the warm-up (Runs = warm-up + timed). ONNX Runtime and OpenVINO: the same decode / "
        "to-float / tiling / to-uint8 in numpy around their inference call. Net: the network calls timed "
        "inside those same E2E calls, summed over the image's tiles: msvision `p.model.run(x)` on the padded "
        "tile, the peers' inference call on the tile, ModelScope `model._inference_forward(tile)` (NAFNet + "
        "clamp).",
        "- Conv GFLOP: 2 × MACs of every convolution (3×3, depthwise 3×3, 1×1, 2×2/2 down, 1×1 up, channel-"
        "attention 1×1) at the padded tile sizes the pipeline runs; element-wise ops not counted. "
        "GFLOP/s and % of peak use each engine's Net median.",
        "- Peak RSS: ru_maxrss of each engine's own process (imports, model load, all runs).",
        "- Output check: uint8 BGR vs ModelScope's output; identical px = all 3 channels equal.",
    ]
    header += [
        f"- {LABEL[k]} runs {v['version']}, inference precision {v['precision']}" for k, v in peers.items()
    ]
    header += [f"- {n}" for n in notes]
    if bf16_skipped:
        header.append(f"- {common.BF16_NOT_RUN}")
    header.append(f"- Whole run: {time.perf_counter() - t_start:.0f} s wall")
    report = "\n".join(header) + "\n\n" + table + "\n"
    print(report)
    if not a.no_write:
        path = a.results
        new = not os.path.exists(path)
        with open(path, "a") as f:
            if new:
                f.write("# Benchmark results\n\nAppended by the scripts in `benchmarks/`; newest last.\n\n")
            f.write(report + "\n")
        print(f"appended to {path}", file=sys.stderr)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    ap.add_argument(
        "--sizes", default="512,1024", help="comma-separated square image sizes (default 512,1024)"
    )
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per engine and size (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument(
        "--slow-repeats",
        type=int,
        default=2,
        help="timed runs for the slow peers (ModelScope/torch, ONNX Runtime, OpenVINO fp32) at sizes >= "
        "--slow-size, to keep the default run near 10 minutes on 2 cores (default 2; 0 = use --repeats)",
    )
    ap.add_argument("--slow-size", type=int, default=1024, help="see --slow-repeats (default 1024)")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"subset of {','.join(ENGINES)}")
    ap.add_argument(
        "--cold-start",
        default="256,512",
        help="image sizes of the cold-start measurement (import + load + first result in fresh processes; "
        "'' = skip; default 256,512)",
    )
    ap.add_argument(
        "--model-dir", default=None, help="existing ModelScope NAFNet directory (default: build one)"
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the random-weight model")
    ap.add_argument("--results", default=os.path.join(common.BENCH_DIR, "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true", help="print only, do not append to RESULTS.md")
    ap.add_argument("--label", default="", help="text added to the report heading")
    ap.add_argument(
        "--no-cache", action="store_true", help="rebuild the random model and re-export ONNX even if cached"
    )
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per engine subprocess")
    # internal: one engine in this process
    ap.add_argument("--engine", choices=sorted(ENGINE_FUNCS), help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    ap.add_argument("--npy-out", help=argparse.SUPPRESS)
    ap.add_argument("--onnx-dir", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.threads < 1 or a.repeats < 1 or a.warmup < 0:
        ap.error("--threads and --repeats must be >= 1, --warmup >= 0")
    if a.engine:
        engine_main(a)
    else:
        orchestrate(a)


if __name__ == "__main__":
    main()
