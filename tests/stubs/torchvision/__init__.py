"""Test-only stand-in for the parts of torchvision that ModelScope's pipelines import.

torchvision has no CPU build on the machines msvision is tested on (the PyPI wheel's compiled ops need
CUDA and fail to register), so the oracle tests put this folder first on ``sys.path``. It implements,
from torchvision's documentation, exactly the functions the exercised ModelScope code calls and is
tested against that documentation in ``tests/test_torchvision_stub.py``. It is never used at run time.
"""

from . import models, ops, transforms  # noqa: F401

__version__ = "0.28.0+msvision-test-stub"
