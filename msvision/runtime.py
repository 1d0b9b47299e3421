"""Thread count, memory limit, precision and build information of the C core."""

import os

from ._native import _C
from .errors import UnsupportedPrecisionError

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


#: Activation memory one network call may need (bytes) unless ``memory_limit=`` or $MSVISION_MEMORY_LIMIT says
#: otherwise: an input that would need more is refused with MemoryLimitError before anything is allocated.
DEFAULT_MEMORY_LIMIT = 8 << 30
MEMORY_LIMIT_VARIABLE = "MSVISION_MEMORY_LIMIT"


def resolve_memory_limit(memory_limit) -> int:
    """Validates a ``memory_limit=`` argument in bytes (None: $MSVISION_MEMORY_LIMIT, else 8 GiB; 0 or 'none' in
    the variable: no limit). Returns bytes, 0 for no limit."""
    if memory_limit is None:
        raw = os.environ.get(MEMORY_LIMIT_VARIABLE, "").strip().lower()
        if not raw:
            return DEFAULT_MEMORY_LIMIT
        if raw in ("none", "0"):
            return 0
        if not raw.isdigit():
            raise ValueError(f"{MEMORY_LIMIT_VARIABLE} must be a number of bytes or 'none', got {raw!r}")
        return int(raw)
    if isinstance(memory_limit, bool) or not isinstance(memory_limit, int) or memory_limit < 0:
        raise ValueError(f"memory_limit must be a number of bytes (0: no limit), got {memory_limit!r}")
    return memory_limit


#: ``precision=``: "fp32" (default) runs every op in fp32, as ModelScope does; "bf16" multiplies the
#: convolutions' bf16 inputs by bf16 weights with fp32 accumulation (fp32 bias, activations and every other op),
#: keeping bf16 between convolutions: about twice the convolution throughput on CPUs with AVX512_BF16 or AMX, at
#: about 3 significant digits. Only models whose accuracy gate holds in bf16 take it (their ``precisions``).
PRECISIONS = ("fp32", "bf16")


def cpu_has_bf16() -> bool:
    """Whether oneDNN dispatches to an ISA with bf16 dot products (AVX512_BF16 or AMX) on this CPU."""
    isa = str(_C.build_info().get("isa", ""))
    return "bf16" in isa or "amx" in isa


def check_precision(precision, supported, what: str) -> str:
    """Validates a ``precision=`` argument for a network (``what``) that meets its accuracy gate in
    ``supported``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision not in supported:
        raise UnsupportedPrecisionError(
            f"{what} has no {precision} mode: none of its accuracy gates holds in {precision} (README, "
            f"'Precision'; supported: {', '.join(supported)})"
        )
    if precision == "bf16" and not cpu_has_bf16():
        raise UnsupportedPrecisionError(
            f"precision='bf16' needs a CPU with AVX512_BF16 or AMX; oneDNN runs {_C.build_info().get('isa')} here"
        )
    return precision


def build_info() -> dict:
    """oneDNN version and commit, its CPU threading runtime, the ISA it dispatches to, and the thread count
    msvision uses by default."""
    info = dict(_C.build_info())
    info["threads"] = default_threads()
    return info
