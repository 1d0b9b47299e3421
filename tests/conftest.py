"""Shared test setup.

- ``tests/stubs`` goes first on sys.path: ModelScope's pipelines import torchvision, which has no CPU build on
  our machines; the stand-in there implements exactly the functions those pipelines call (tested in
  test_torchvision_stub.py). It is only ever used by the oracle side of the tests.
- ``shared_dir``: real weights and photos beside the project (``../shared`` or $MSVISION_SHARED).
- ``gpen_photo`` and ``gpen_dir``: GPEN's model directory (~880 MB of random weights) is built once per session,
  its face detector calibrated to find two faces on the photo.
- ``MSVISION_REFUSE_REF=1`` for the whole suite (subprocesses too): a planned step on a oneDNN reference
  implementation is a test failure.
- In CI (``CI`` set, as ``.ci/run`` does) a skipped test fails the run: a skipped conformance test is not a passed
  one, and a skip usually means a test dependency is missing from the ``test`` extras. The one exception is a
  test that needs a CPU feature the machine lacks (``support.cpu.needs_cpu_feature``: the bf16 mode's tests where
  oneDNN has no bf16 kernels); those are listed at the end of the run.
"""

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# Every plan the suite makes must run on fast kernels: planning fails where only a oneDNN reference (ref)
# implementation would run a step (a C kernel must take its place), so any such step fails its test.
os.environ["MSVISION_REFUSE_REF"] = "1"
sys.path.insert(0, str(TESTS / "stubs"))
sys.path.insert(0, str(TESTS))
from support.cpu import CPU_FEATURE_SKIP  # noqa: E402
from support.paths import shared_path  # noqa: E402


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = shared_path()
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared assets folder {path} is missing in CI")
        pytest.skip(f"shared assets folder {path} is absent (a clone outside the workplace)")
    return path


@pytest.fixture(scope="session")
def gpen_photo(tmp_path_factory) -> str:
    """The astronaut's head and shoulders, 256 x 256."""
    from PIL import Image
    from support.model_dirs import skimage_photo

    path = tmp_path_factory.mktemp("gpen_photo") / "astronaut_256.png"
    Image.open(skimage_photo("astronaut.png")).convert("RGB").crop((120, 20, 376, 276)).save(path)
    return str(path)


@pytest.fixture(scope="session")
def gpen_dir(tmp_path_factory, gpen_photo) -> str:
    import numpy as np
    from PIL import Image
    from support.model_dirs import make_gpen_dir

    photo = np.asarray(Image.open(gpen_photo))
    return make_gpen_dir(
        tmp_path_factory.mktemp("gpen_model") / "model", calibrate_on=photo, passing=(2, 0, 0)
    )


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(2)


_skipped_in_ci, _skipped_for_cpu = [], []


def pytest_runtest_logreport(report):
    if os.environ.get("CI") and report.skipped:
        for_cpu = CPU_FEATURE_SKIP in str(report.longrepr)
        (_skipped_for_cpu if for_cpu else _skipped_in_ci).append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped_for_cpu:
        print(
            f"\nCI: {len(_skipped_for_cpu)} test(s) need a CPU feature this machine lacks (accepted):",
            *_skipped_for_cpu,
            sep="\n  ",
        )
    if _skipped_in_ci:
        print(
            f"\nCI: {len(_skipped_in_ci)} test(s) were skipped, which fails CI:", *_skipped_in_ci, sep="\n  "
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
