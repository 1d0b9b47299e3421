"""Running a graph built in a test: one fresh session per call (a test that needs plan reuse keeps its own)."""

from msvision import _C


def run(graph, inputs, threads=1, layout="nchw"):
    """Plans and runs ``graph`` on ``inputs`` in a new Session (``threads=0``: OpenMP's default)."""
    return _C.Session(graph, threads=threads, layout=layout).run(inputs)


def session_steps(graph, inputs, threads=1, layout="nchw"):
    """The plan's steps for these inputs ('op: implementation [layouts]')."""
    s = _C.Session(graph, threads=threads, layout=layout)
    s.run(inputs)
    return s.steps()
