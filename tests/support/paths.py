"""Where the tests find things beside the project."""

import os
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def shared_path() -> Path:
    """The shared assets folder: $MSVISION_SHARED, else ../shared beside the project root."""
    env = os.environ.get("MSVISION_SHARED")
    return Path(env) if env else TESTS.parent.parent / "shared"
