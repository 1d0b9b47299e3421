"""``python -m msvision inspect GRAPH.pb``: the op histogram of a frozen graph, what msvision does not support in
it, and whether it imports; exit status 0 only when it does."""

import subprocess
import sys

from support.tf_graphs import bshm_graph, freeze


def inspect(path, *args):
    return subprocess.run(
        [sys.executable, "-m", "msvision", "inspect", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_inspect_a_matting_graph(tmp_path):
    path = tmp_path / "tf_graph.pb"
    path.write_bytes(bshm_graph())
    proc = inspect(path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "unsupported ops: none" in out
    assert "placeholders: input_image:0" in out
    assert "unconsumed tensors: output_png:0" in out
    assert "Switch 90" in out and "Conv2D 16" in out  # the file's histogram, conds included
    assert "import for ['input_image:0'] -> ['output_png:0']: ok" in out
    after = out.split("after pruning and folding:")[1]
    assert "Switch" not in after and "Identity" not in after  # folded away


def test_inspect_names_unsupported_ops(tmp_path):
    def cumsum():
        import tensorflow as tf

        x = tf.compat.v1.placeholder(tf.float32, [1, None, None, 3], name="x")
        tf.identity(tf.math.cumsum(tf.nn.relu(x), axis=2), name="y")
        return ["y"]

    path = tmp_path / "g.pb"
    path.write_bytes(freeze(cumsum))
    proc = inspect(path, "--outputs", "y:0")
    assert proc.returncode == 1
    assert "unsupported ops: Cumsum 1" in proc.stdout
    assert "FAILED" in proc.stdout and "Cumsum" in proc.stdout.split("FAILED")[1]


def test_inspect_refuses_a_non_graph(tmp_path):
    path = tmp_path / "not_a_graph.pb"
    path.write_bytes(b"\xff" * 64)
    proc = inspect(path)
    assert proc.returncode == 1
    assert "byte" in proc.stderr and "Traceback" not in proc.stderr
