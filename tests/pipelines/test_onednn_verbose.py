"""oneDNN's own trace of a NAFNet run: optimized (JIT/brgemm) implementations only, no reorder at all (the pipeline
hands the session NHWC buffers, the network's own layout, and the last convolution writes straight into the
caller's output buffer), and nothing created on a repeat call."""

import json
import subprocess
import sys

from support.model_dirs import SIDD, make_nafnet_dir

SCRIPT = r"""
import sys, numpy as np, msvision
p = msvision.pipeline('image-denoising', model=sys.argv[1], threads=2)
img = np.random.default_rng(0).integers(0, 256, (100, 140, 3), dtype=np.uint8)
p(img)
print('=== SECOND CALL ===', flush=True)
p(img)
"""


def test_second_call_trace(tmp_path):
    model_dir = make_nafnet_dir(tmp_path / "sidd", SIDD, seed=4)
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, model_dir],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "ONEDNN_VERBOSE": "1"},
    )
    assert run.returncode == 0, run.stderr
    trace = run.stdout.split("=== SECOND CALL ===", 1)[1].splitlines()
    execs = [line.split(",") for line in trace if line.startswith("onednn_verbose") and ",exec," in line]
    created = [line for line in trace if ",create:" in line]
    assert not created, created[:3]
    kinds = {}
    for fields in execs:
        kinds.setdefault(fields[3], set()).add(fields[4])
    assert kinds["convolution"] and all("ref" not in impl for impls in kinds.values() for impl in impls), (
        json.dumps({k: sorted(v) for k, v in kinds.items()})
    )
    assert all(impl.startswith(("brg", "brdgmm", "jit")) for impl in kinds["convolution"]), kinds[
        "convolution"
    ]
    reorders = [f for f in execs if f[3] == "reorder"]
    assert not reorders, reorders  # NCHW caller buffers needed two here, one at each edge
