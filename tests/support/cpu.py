"""Skips for tests that need a CPU feature the machine lacks.

In CI a skipped test fails the run (tests/conftest.py), except one marked here: a test of the bf16 mode cannot run
where oneDNN has no bf16 kernels (no AVX512_BF16 or AMX), and what such a machine does instead, refusing the mode
with UnsupportedPrecisionError, is tested on every machine. Such skips are listed at the end of the run.
"""

from __future__ import annotations

import pytest

CPU_FEATURE_SKIP = "needs a CPU feature this machine lacks"


def needs_cpu_feature(available: bool, feature: str):
    """A skipif mark for a test that needs ``feature``; CI accepts the skip and lists it."""
    return pytest.mark.skipif(not available, reason=f"{CPU_FEATURE_SKIP}: {feature}")
