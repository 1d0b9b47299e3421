"""Thread counts a caller can ask for: bounded in Python with a clear error, and checked by the core before
GNU OpenMP (which ends the whole process when it cannot start threads) is asked for them."""

import subprocess
import sys
import textwrap

import pytest

from msvision import pipeline
from msvision.runtime import max_threads


def test_threads_argument_is_bounded():
    with pytest.raises(ValueError, match=r"threads=1000 asks for 1000 threads, more than \d+ \(4 per CPU"):
        pipeline("image-denoising", threads=1000)
    assert pipeline("image-denoising", threads=max_threads()).threads == max_threads()


@pytest.mark.parametrize("var", ["MSVISION_NUM_THREADS", "OMP_NUM_THREADS"])
def test_thread_variables_are_bounded(monkeypatch, var):
    monkeypatch.delenv("MSVISION_NUM_THREADS", raising=False)
    monkeypatch.setenv(var, "1000")
    with pytest.raises(ValueError, match=f"environment variable {var}=1000"):
        pipeline("image-denoising")
    monkeypatch.setenv(var, "2,1")  # OpenMP's nested list form: the first number counts
    assert pipeline("image-denoising").threads == 2


def test_core_refuses_threads_it_cannot_start():
    """In a process whose address space is nearly full, a session of 1000 threads (the binding has no Python
    bound) raises MemoryError when it runs; it used to end the process ("Thread creation failed")."""
    script = textwrap.dedent(
        """
        import resource
        import numpy as np
        import psutil
        from msvision import _C
        g = _C.Graph(); i = g.input(channels=3); g.output(g.eltwise(i, act="relu")); g.finalize()
        x = np.ones((1, 3, 64, 64), np.float32)
        two = _C.Session(g, threads=2)
        two.run([x])
        limit = psutil.Process().memory_info().vms + (512 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        try:
            _C.Session(g, threads=1000).run([x])
        except MemoryError as e:
            print("refused:", e)
        out = two.run([x])[0]  # still usable
        print("after:", float(out.sum()))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "refused: cannot run on 1000 threads" in run.stdout
    assert "after: 12288.0" in run.stdout
