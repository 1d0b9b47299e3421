"""Loads the C core, msvision._C, making sure libdnnl from the onednn-cpu-gomp wheel is found.

The extension carries an rpath to <prefix>/lib, where that wheel installs libdnnl.so.3. Where the layout differs
(user installs, unusual prefixes) we locate the library through the wheel's file list and preload it, so no
LD_LIBRARY_PATH is ever needed.

Run from a source checkout (``python3 -m pip install . && python3 -m msvision ...`` in the repository root), the
checkout's ``msvision/`` shadows the installed package and holds no compiled extension: the installed package's
``_C`` is loaded then.
"""

import ctypes
import importlib.util
import os
import sys
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


def _installed_extension():
    """The installed distribution's msvision._C when this package is a source checkout without one, else None."""
    here = os.path.dirname(os.path.abspath(__file__))
    if any(name.startswith("_C.") for name in os.listdir(here)):
        return None  # built here (in place): its own import error is the one to report
    # every installed msvision (the checkout's own build metadata, e.g. msvision.egg-info, lists no extension)
    files = [f for dist in metadata.distributions(name="msvision") for f in dist.files or []]
    for f in files:  # PackagePath: pure POSIX paths relative to site-packages
        if f.parent.as_posix() != "msvision" or not (f.name.startswith("_C.") and f.suffix == ".so"):
            continue
        path = str(f.locate())
        if not os.path.exists(path):
            continue
        spec = importlib.util.spec_from_file_location(__package__ + "._C", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[spec.name] = module
        return module
    return None


try:
    from . import _C  # noqa: F401
except ImportError as first_error:  # libdnnl not on the rpath: preload it, then retry
    _preload_onednn()
    try:
        from . import _C  # noqa: F401
    except ImportError:
        _C = _installed_extension()
        if _C is None:
            raise ImportError(
                f"msvision's C extension could not be loaded ({first_error}); install the package with "
                "`python3 -m pip install .` (or build it in place with `python3 setup.py build_ext --inplace`)"
            ) from None
