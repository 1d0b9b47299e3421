"""Thread count and build information of the C core."""

import os

from ._native import _C


def _positive_int(value):
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def default_threads() -> int:
    """Threads a pipeline uses unless given ``threads=``: MSVISION_NUM_THREADS, else OMP_NUM_THREADS, else the
    CPUs this process may run on."""
    for var in ("MSVISION_NUM_THREADS", "OMP_NUM_THREADS"):
        n = _positive_int(os.environ.get(var))
        if n:
            return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_threads(threads) -> int:
    """Validates a ``threads=`` argument (None: the default)."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    return threads


def build_info() -> dict:
    """oneDNN version and commit, its CPU threading runtime, the ISA it dispatches to, and the thread count
    msvision uses by default."""
    info = dict(_C.build_info())
    info["threads"] = default_threads()
    return info
