"""Replays the fuzz seeds and every input a fuzzing run ever failed on (tests/fuzz/regressions/<target>/):
each must end normally or with msvision's documented error for a bad file, quickly.

To add one: put the failing input (``tests/fuzz/run.py`` prints its path) into
``tests/fuzz/regressions/<target>/`` together with the fix."""

import sys
import time
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent
sys.path.insert(0, str(FUZZ))
from targets import TARGETS, run_one  # noqa: E402


def _inputs():
    for kind in ("seeds", "regressions"):
        for target in TARGETS:
            for path in sorted((FUZZ / kind / target).glob("*")):
                yield pytest.param(target, path, id=f"{kind}/{target}/{path.name}")


@pytest.mark.parametrize("target, path", list(_inputs()))
def test_replay(target, path):
    start = time.perf_counter()
    run_one(target, path.read_bytes())
    assert time.perf_counter() - start < 10


def test_every_target_has_seeds():
    for target in TARGETS:
        assert any((FUZZ / "seeds" / target).glob("*")), target
