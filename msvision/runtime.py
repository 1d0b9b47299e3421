"""Thread count and build information of the C core."""

import os

from ._native import _C

#: ``threads=`` may ask for at most this many threads per CPU this process may run on: more only slows a
#: compute-bound OpenMP program down, and thousands of threads can exhaust a process's memory (GNU OpenMP then
#: ends the whole process; the core also checks that the threads can be started before it runs).
MAX_THREADS_PER_CPU = 4
THREAD_VARIABLES = ("MSVISION_NUM_THREADS", "OMP_NUM_THREADS")


def available_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def max_threads() -> int:
    return MAX_THREADS_PER_CPU * available_cpus()


def _check_count(n: int, source: str) -> int:
    if n > max_threads():
        raise ValueError(
            f"{source} asks for {n} threads, more than {max_threads()} ({MAX_THREADS_PER_CPU} per CPU for the "
            f"{available_cpus()} CPU(s) this process may use)"
        )
    return n


def default_threads() -> int:
    """Threads a pipeline uses unless given ``threads=``: MSVISION_NUM_THREADS, else OMP_NUM_THREADS (as OpenMP
    reads it: the first number of a list), else the CPUs this process may run on. A variable that is set but
    not a positive integer is ignored; one above :func:`max_threads` is an error."""
    for var in THREAD_VARIABLES:
        raw = os.environ.get(var, "").split(",")[0].strip()
        if raw.isdigit() and int(raw) > 0:
            return _check_count(int(raw), f"the environment variable {var}={raw}")
    return available_cpus()


def resolve_threads(threads) -> int:
    """Validates a ``threads=`` argument (None: the default)."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    return _check_count(threads, f"threads={threads}")


def build_info() -> dict:
    """oneDNN version and commit, its CPU threading runtime, the ISA it dispatches to, and the thread count
    msvision uses by default."""
    info = dict(_C.build_info())
    info["threads"] = default_threads()
    return info
