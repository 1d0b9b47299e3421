"""Loads the C core, msvision._C, making sure libdnnl from the onednn-cpu-gomp wheel is found.

The extension carries an rpath to <prefix>/lib, where that wheel installs libdnnl.so.3. Where the layout differs
(user installs, unusual prefixes) we locate the library through the wheel's file list and preload it, so no
LD_LIBRARY_PATH is ever needed.
"""

import ctypes
import os
from importlib import metadata


def _preload_onednn():
    try:
        files = metadata.distribution("onednn-cpu-gomp").files or []
    except metadata.PackageNotFoundError:
        return
    for f in files:
        if str(f).endswith("libdnnl.so.3"):
            path = str(f.locate())
            if os.path.exists(path):
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            return


try:
    from . import _C  # noqa: F401
except ImportError as first_error:  # libdnnl not on the rpath: preload it, then retry
    _preload_onednn()
    try:
        from . import _C  # noqa: F401
    except ImportError:
        raise first_error from None
