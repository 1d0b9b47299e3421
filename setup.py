"""Builds msvision._C, the C core on oneDNN, against the oneDNN wheels from PyPI.

oneDNN comes from the ``onednn-cpu-gomp``/``onednn-devel-cpu-gomp`` pair (oneDNN 3.2, GNU OpenMP); see README
("Why this oneDNN") for the measurements behind that choice. The extension finds libdnnl at run time through
an rpath relative to site-packages, with msvision/_native.py preloading it as a fallback.
Set MSVISION_WERROR=1 to turn warnings into errors (CI does), and MSVISION_SANITIZE=address,undefined to build
with those sanitizers (.ci/sanitize does; the process must then preload the ASan runtime).
"""

import glob
import os
from importlib import metadata

import numpy
from setuptools import Extension, setup


def _dist_file(dist_name, suffix):
    """Absolute path of the file of an installed distribution whose RECORD path ends with suffix."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if ("/" + str(f).replace("\\", "/")).endswith(suffix):
            return os.path.abspath(str(dist.locate_file(f)))
    return None


def _onednn_paths():
    header = _dist_file("onednn-devel-cpu-gomp", "include/oneapi/dnnl/dnnl.h")
    lib = _dist_file("onednn-cpu-gomp", "/libdnnl.so")
    if not header or not lib:
        raise RuntimeError(
            "oneDNN not found: install the build requirements onednn-cpu-gomp==2023.2.0 and "
            "onednn-devel-cpu-gomp==2023.2.0 (pip does this automatically from pyproject.toml)"
        )
    return os.path.dirname(os.path.dirname(os.path.dirname(header))), os.path.dirname(lib)


include_dir, lib_dir = _onednn_paths()
warnings = ["-Wall", "-Wextra", "-Wno-missing-field-initializers"]
if os.environ.get("MSVISION_WERROR") == "1":
    warnings.append("-Werror")
sanitize = os.environ.get("MSVISION_SANITIZE", "")
sanitizer_flags = (
    [f"-fsanitize={sanitize}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"] if sanitize else []
)
optimize = ["-O1", "-g"] if sanitize else ["-O3"]

# csrc/binding/ is the one file set that includes Python.h; csrc/backend/ the only one that includes dnnl.h
sources = sorted(glob.glob("csrc/*/*.c") + glob.glob("csrc/*/ops/*.c"))

extension = Extension(
    "msvision._C",
    sources=sources,
    include_dirs=[include_dir, numpy.get_include(), "csrc"],
    library_dirs=[lib_dir],
    libraries=["dnnl"],
    define_macros=[("_GNU_SOURCE", None)],
    extra_compile_args=[
        "-std=c11",
        *optimize,
        "-fopenmp",
        "-fvisibility=hidden",
        *warnings,
        *sanitizer_flags,
    ],
    # site-packages/msvision/_C.so -> <prefix>/lib, where the onednn wheel puts libdnnl.so.3
    extra_link_args=["-fopenmp", "-Wl,-rpath,$ORIGIN/../../..", "-Wl,--disable-new-dtags", *sanitizer_flags],
)

setup(ext_modules=[extension])
