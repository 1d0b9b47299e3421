"""Helpers shared by the benchmarks: paths, test images, timing, memory, machine description, FLOP counts.

Nothing here imports torch, ModelScope or msvision, so an engine's subprocess only loads what it benchmarks.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
OUT_DIR = os.path.join(BENCH_DIR, "out")  # git-ignored
STUBS_DIR = os.path.join(REPO_ROOT, "tests", "stubs")  # test-only torchvision stand-in ModelScope imports

# This machine's fp32 peak: 2 Zen 4 cores ~ 230 GFLOP/s (two 256-bit FMA pipes per core, so AVX2 and the
# double-pumped AVX-512 reach the same peak); scaled linearly by threads.
PEAK_GFLOPS_PER_THREAD = 115.0


def use_torchvision_stub() -> None:
    """ModelScope's pipelines import torchvision, which has no CPU build here: put the stand-in first."""
    if STUBS_DIR not in sys.path:
        sys.path.insert(0, STUBS_DIR)


def use_test_fixtures():
    """tests/support/model_dirs.py: the builders of random-weight ModelScope model directories the tests use too."""
    use_torchvision_stub()
    tests_dir = os.path.dirname(STUBS_DIR)
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    from support import model_dirs

    return model_dirs


def use_test_oracle():
    """tests/support/oracle.py: how the tests run ModelScope's pipelines (stand-ins included)."""
    use_test_fixtures()
    from support import oracle

    return oracle


def cached_model_dir(
    name: str, recipe: dict, build, rebuild: bool = False, weights: str = "pytorch_model.pt"
) -> str:
    """benchmarks/out/<name>, built by ``build(dir)`` unless it already holds a model (its ``weights`` file)
    built from ``recipe``."""
    model_dir = os.path.join(OUT_DIR, name)
    marker = os.path.join(model_dir, "bench_build.json")
    have = None
    if os.path.isfile(marker) and os.path.isfile(os.path.join(model_dir, weights)):
        with open(marker) as f:
            have = json.load(f)
    if have != recipe or rebuild:
        print(f"building {name} in {model_dir} ...", file=sys.stderr)
        build(model_dir)
        with open(marker, "w") as f:
            json.dump(recipe, f)
    return model_dir


def use_repo_msvision() -> None:
    """Import msvision from this checkout (built in place) rather than any installed copy."""
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)


def msvision_bf16_available() -> bool:
    """Whether this CPU runs msvision's opt-in bf16 mode (AVX512_BF16 or AMX): the bf16 engines are left out of a
    run where it does not, and the report says so."""
    use_repo_msvision()
    from msvision import runtime

    return runtime.cpu_has_bf16()


BF16_NOT_RUN = "msvision bf16 (opt-in): not run, this CPU has neither AVX512_BF16 nor AMX"


def load_modelscope_pipeline(task: str, model_dir: str, threads: int):
    """ModelScope's own ``pipeline(task, model=model_dir)`` on torch with ``threads`` threads; returns the pipeline
    and the seconds its imports and loading took."""
    use_torchvision_stub()
    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(threads)
    from modelscope.pipelines import pipeline

    return pipeline(task, model=model_dir), time.perf_counter() - t0


def load_msvision_pipeline(task: str, model_dir: str, threads: int, precision: str = "fp32"):
    """This checkout's ``msvision.pipeline(task, model=model_dir, threads=threads, precision=precision)``; returns
    the pipeline and the seconds its import and loading took."""
    use_repo_msvision()
    t0 = time.perf_counter()
    import msvision

    pipe = msvision.pipeline(task, model=model_dir, threads=threads, precision=precision)
    return pipe, time.perf_counter() - t0


def thread_env(threads: int) -> dict:
    """Environment sizing the OpenMP / MKL pools of every engine like the engines' own thread settings."""
    names = (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MSVISION_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",  # TensorFlow's pool (ModelScope's TF pipelines set no thread count themselves)
    )
    return {var: str(threads) for var in names}


# ---------------------------------------------------------------- images


def skimage_data_path(name: str) -> str:
    import skimage

    return os.path.join(os.path.dirname(skimage.__file__), "data", name)


def make_test_image(size: int, directory: str) -> tuple[str, str]:
    """A real photo of ``size`` x ``size`` px saved as PNG; returns (path, description).

    <= 512 px: scikit-image's astronaut.png (512x512), resized if smaller. Larger: retina.jpg (1411x1411),
    center-cropped to a square and resized with Lanczos.
    """
    from PIL import Image

    os.makedirs(directory, exist_ok=True)
    name = "astronaut.png" if size <= 512 else "retina.jpg"
    img = Image.open(skimage_data_path(name)).convert("RGB")
    w, h = img.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    img = img.crop(box)
    what = f"skimage {name} {w}x{h}"
    if side != size:
        img = img.resize((size, size), Image.LANCZOS)
        what += f", center crop {side}x{side}, Lanczos resize to {size}x{size}"
    path = os.path.join(directory, f"nafnet_{size}.png")
    img.save(path)
    return path, what


# ---------------------------------------------------------------- tiling and FLOPs


def tile_plan(height: int, width: int):
    """The pipeline's tiling (ModelScope's crop_process), taken from msvision itself: yields (source window,
    placement window, slice of the tile result), each as (slice_y, slice_x)."""
    use_repo_msvision()
    from msvision.pipelines.cv.image_restoration_pipeline import tile_plan as plan

    return plan(height, width)


def tile_shapes(height: int, width: int) -> list[tuple[int, int]]:
    """(h, w) of every tile the pipeline feeds the network, in order, before padding."""
    return [(sy.stop - sy.start, sx.stop - sx.start) for (sy, sx), _, _ in tile_plan(height, width)]


def pad_to(n: int, multiple: int) -> int:
    return n + (multiple - n % multiple) % multiple


def _conv_macs(cin: int, cout: int, k: int, out_h: int, out_w: int, groups: int = 1) -> int:
    return out_h * out_w * cout * (cin // groups) * k * k


def nafnet_conv_flops(net: dict, height: int, width: int) -> int:
    """2 x multiply-accumulates of every convolution of ModelScope's NAFNet on one padded H x W input.

    Counts intro/ending 3x3, every NAFBlock's 1x1 convs, depthwise 3x3 and its channel-attention 1x1 (on a
    1x1 map), the 2x2 stride-2 downsamplers and the 1x1 upsamplers before PixelShuffle. Element-wise ops
    (LayerNorm, SimpleGate, residual adds, pooling) are not counted.
    """
    c0, img_c = net.get("width", 16), net.get("img_channel", 3)
    enc, dec, mid = net.get("enc_blk_nums", []), net.get("dec_blk_nums", []), net.get("middle_blk_num", 1)

    def block(c: int, h: int, w: int) -> int:
        dw = 2 * c
        return (
            _conv_macs(c, dw, 1, h, w)  # conv1
            + _conv_macs(dw, dw, 3, h, w, groups=dw)  # conv2, depthwise
            + _conv_macs(dw // 2, dw // 2, 1, 1, 1)  # sca (after global average pooling)
            + _conv_macs(dw // 2, c, 1, h, w)  # conv3
            + _conv_macs(c, 2 * c, 1, h, w)  # conv4
            + _conv_macs(c, c, 1, h, w)  # conv5
        )

    m = 2 ** len(enc)
    h, w = pad_to(height, m), pad_to(width, m)
    macs = _conv_macs(img_c, c0, 3, h, w) + _conv_macs(c0, img_c, 3, h, w)  # intro, ending
    c = c0
    for n in enc:
        macs += n * block(c, h, w)
        h, w = h // 2, w // 2
        macs += _conv_macs(c, 2 * c, 2, h, w)  # down: 2x2 stride 2
        c *= 2
    macs += mid * block(c, h, w)
    for n in dec:
        macs += _conv_macs(c, 2 * c, 1, h, w)  # up: 1x1 then PixelShuffle(2)
        h, w, c = h * 2, w * 2, c // 2
        macs += n * block(c, h, w)
    return 2 * macs


# ---------------------------------------------------------------- timing and memory


def time_calls(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn()`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summarize(times: list[float]) -> dict:
    return {"n": len(times), "min": min(times), "median": statistics.median(times), "all": times}


def timed(fn, acc: list):
    """``fn`` wrapped to add the seconds of each call to ``acc[0]`` (to time the network inside a pipeline)."""

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        r = fn(*args, **kwargs)
        acc[0] += time.perf_counter() - t0
        return r

    return wrapper


def timed_e2e(call_once, acc: list, repeats: int, warmup: int):
    """End-to-end times of ``call_once()`` and, per timed call, the seconds it added to ``acc`` (see ``timed``),
    both summarized."""
    net = []

    def call():
        acc[0] = 0.0
        call_once()
        net.append(acc[0])

    e2e = time_calls(call, repeats, warmup)
    return summarize(e2e), summarize(net[warmup:])


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far: Linux's VmHWM, which starts afresh at exec. (ru_maxrss does
    not: an engine process started by a parent that had grown larger would report the parent's peak.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def compare_uint8(a: np.ndarray, b: np.ndarray) -> dict:
    """Max abs difference and share of pixels whose channels are all identical, for two HxWxC uint8 images."""
    if a.shape != b.shape:
        return {"error": f"shape {a.shape} vs {b.shape}"}
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {
        "max_abs_diff": int(d.max()),
        "identical_pixels_pct": float(100.0 * np.mean(np.all(d == 0, axis=-1))),
        "differing_pixels": int(np.count_nonzero(np.any(d != 0, axis=-1))),
        "within1_pixels_pct": float(100.0 * np.mean(np.all(d <= 1, axis=-1))),
    }


# ---------------------------------------------------------------- machine description


def _lscpu() -> dict:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def machine_info() -> dict:
    cpu = _lscpu()
    return {
        "cpu_model": cpu.get("Model name", platform.processor() or "unknown"),
        "cpus": cpu.get("CPU(s)", str(os.cpu_count())),
        "cores_per_socket": cpu.get("Core(s) per socket", "?"),
        "threads_per_core": cpu.get("Thread(s) per core", "?"),
        "sockets": cpu.get("Socket(s)", "?"),
        "hypervisor": cpu.get("Hypervisor vendor", ""),
        "avx512": "avx512f" in cpu.get("Flags", ""),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def package_versions(names) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# ---------------------------------------------------------------- one process per engine


def engine_main(engine_funcs: dict, a) -> None:
    """Child side: run engine ``a.engine`` and write its result (plus peak RSS) to ``a.json_out``."""
    result = engine_funcs[a.engine](a)
    result["peak_rss_mib"] = peak_rss_mib()
    result["engine"] = a.engine
    result["threads"] = a.threads
    with open(a.json_out, "w") as f:
        json.dump(result, f, indent=1)


def run_engine_process(
    script: str, args: list, json_out: str, threads: int, timeout: float, label: str
) -> dict:
    """Parent side: run ``script args`` in a fresh process sized to ``threads`` and return its JSON result,
    with the wall time added."""
    env = dict(os.environ)
    env.update(thread_env(threads))
    env.setdefault("MODELSCOPE_LOG_LEVEL", "40")  # keep ModelScope's INFO lines out of the report
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, os.path.abspath(script), *args, "--json-out", json_out],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"{label} failed (rc {proc.returncode}):\n{tail}")
    with open(json_out) as f:
        res = json.load(f)
    res["wall_s"] = time.perf_counter() - t0
    return res


def fmt_s(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.2f}"


# ---------------------------------------------------------------- the ONNX peers (ONNX Runtime, OpenVINO)

# The engines that run an ONNX export of ModelScope's own network: ONNX Runtime's CPU provider, and OpenVINO's
# CPU plugin twice, once forced to fp32 and once with its defaults (which on a CPU with AVX-512 BF16 or AMX
# infer in bf16: what a user who tries OpenVINO sees).
ONNX_PEERS = ("ort", "ov_f32", "ov_default")
ONNX_PEER_LABEL = {
    "ort": "ONNX Runtime",
    "ov_f32": "OpenVINO fp32",
    "ov_default": "OpenVINO default",
}


def openvino_compile(core, model, engine: str, threads: int):
    """``model`` (a path or an ov.Model) compiled by OpenVINO's CPU plugin for ``engine`` ('ov_f32' forces fp32,
    'ov_default' keeps the plugin's default precision): latency hint, one stream, ``threads`` threads. Returns the
    compiled model and what it really runs (version, precision)."""
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
    if engine == "ov_f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = core.compile_model(model, "CPU", config)
    info = {
        "version": f"openvino {ov.__version__.split('-')[0]}",
        "precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
    }
    return compiled, info


class OnnxPeer:
    """One ONNX file loaded by ``engine`` (one of ONNX_PEERS) with ``threads`` threads; ``run(x)`` returns the
    outputs as NumPy arrays, ``load_s`` the seconds the import and compilation took, ``info`` what the engine
    really runs (version, precision)."""

    def __init__(self, engine: str, path: str, threads: int):
        t0 = time.perf_counter()
        if engine == "ort":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            self.run = lambda x: sess.run(None, {name: x})
            self.info = {"version": f"onnxruntime {ort.__version__}", "precision": "f32"}
        elif engine in ("ov_f32", "ov_default"):
            import openvino as ov

            compiled, self.info = openvino_compile(ov.Core(), path, engine, threads)
            request = compiled.create_infer_request()

            def run(x):
                request.infer({0: x})
                return [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]

            self.run = run
        else:
            raise ValueError(f"unknown ONNX peer {engine!r}; choose from {', '.join(ONNX_PEERS)}")
        self.load_s = time.perf_counter() - t0


TF_GRAPH_PEERS = ("ov_f32", "ov_default")


class TfGraphPeer:
    """A TensorFlow frozen graph (``.pb``) run by OpenVINO's CPU plugin, which reads the format itself (no export
    step): ``engine`` 'ov_f32' or 'ov_default' as in ONNX_PEERS, the input reshaped to ``shape``; ``run(x)``
    returns the graph's ``output`` tensor."""

    def __init__(self, engine: str, path: str, input_name: str, output: str, shape, threads: int):
        import openvino as ov

        if engine not in TF_GRAPH_PEERS:
            raise ValueError(f"unknown TF graph peer {engine!r}; choose from {', '.join(TF_GRAPH_PEERS)}")
        t0 = time.perf_counter()
        core = ov.Core()
        model = core.read_model(path)
        model.reshape({input_name: list(shape)})
        compiled, self.info = openvino_compile(core, model, engine, threads)
        request = compiled.create_infer_request()
        port = compiled.output(output)
        dtype = compiled.input(input_name).get_element_type().to_dtype()

        def run(x):  # the cast is TensorFlow's feed conversion (a uint8 image fed to a float placeholder)
            request.infer({input_name: np.asarray(x, dtype)})
            return request.get_tensor(port).data.copy()

        self.run = run
        self.load_s = time.perf_counter() - t0


# ---------------------------------------------------------------- cold start

_COLD_START = """
import sys, time, json
t0 = time.perf_counter()
sys.path[:0] = {paths!r}
{imports}
t1 = time.perf_counter()
p = pipeline({task!r}, model={model!r}{kwargs})
t2 = time.perf_counter()
p({image!r})
t3 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "first_s": t3 - t2}}))
"""


def cold_start(
    engine: str, task: str, model_dir: str, image: str, threads: int, runs: int = 3, timeout: float = 600
) -> dict:
    """Import + load + first result of ``engine``'s pipeline ('msvision' or 'modelscope') in ``runs`` fresh Python
    processes, one after the other: of the run with the median total, the seconds of each part measured inside
    it and ``process_s``, the wall time from launching the interpreter to its exit (start-up and teardown
    included); ``totals``: every run's total."""
    results = sorted(
        (_cold_start_once(engine, task, model_dir, image, threads, timeout) for _ in range(runs)),
        key=lambda r: r["total_s"],
    )
    median = dict(results[len(results) // 2])
    median["totals"] = [r["total_s"] for r in results]
    return median


def _cold_start_once(
    engine: str, task: str, model_dir: str, image: str, threads: int, timeout: float
) -> dict:
    if engine == "msvision":
        paths, imports, kwargs = [REPO_ROOT], "from msvision import pipeline", f", threads={threads}"
    elif engine == "modelscope":
        paths = [STUBS_DIR]
        imports = f"import torch\ntorch.set_num_threads({threads})\nfrom modelscope.pipelines import pipeline"
        kwargs = ""
    else:
        raise ValueError(f"no cold start for {engine!r}")
    code = _COLD_START.format(
        paths=paths, imports=imports, task=task, model=model_dir, kwargs=kwargs, image=image
    )
    env = dict(os.environ)
    env.update(thread_env(threads))
    env.setdefault("MODELSCOPE_LOG_LEVEL", "40")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"cold start of {engine} failed (rc {proc.returncode}):\n{proc.stderr[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["total_s"] = res["import_s"] + res["load_s"] + res["first_s"]
    res["process_s"] = wall
    return res


def fmt_cold(res: dict) -> str:
    runs = ", ".join(f"{t:.2f}" for t in res["totals"])
    return (
        f"{res['total_s']:.2f} s median of {len(res['totals'])} fresh processes ({runs}); that run: import "
        f"{res['import_s']:.2f} + load {res['load_s']:.2f} + first result {res['first_s']:.2f} s, "
        f"{res['process_s']:.2f} s from launching Python to its exit"
    )


def export_onnx(module, x, path: str, dynamo_order=(True, False), **options) -> dict:
    """``torch.onnx.export(module, (x,), path)`` at opset 17 with the weights inside the file, trying the dynamo
    exporter and the TorchScript one in ``dynamo_order``; returns the exporter that worked, the seconds it took
    and the failures before it (``errors``), or raises RuntimeError with every failure."""
    import warnings

    import torch

    t0 = time.perf_counter()
    errors = []
    for dynamo in dynamo_order:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with torch.no_grad():
                    torch.onnx.export(
                        module, (x,), path, opset_version=17, dynamo=dynamo, external_data=False, **options
                    )
            exporter = "dynamo" if dynamo else "torchscript"
            return {"exporter": exporter, "export_s": time.perf_counter() - t0, "errors": errors}
        except Exception as e:  # the fallback is the point
            errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(e).__name__}: {e}"[:400])
    raise RuntimeError("torch.onnx.export failed: " + " | ".join(errors))
