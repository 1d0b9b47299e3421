"""Fuzz targets: every parser an attacker reaches through a model directory or an input.

Each target takes the bytes of one file and runs it through msvision's reader exactly as a pipeline would. A
target may only end normally or raise the error msvision documents for a bad file (``EXPECTED``); any other
exception, a crash, a hang or runaway memory is a bug.

    python3 tests/fuzz/targets.py TARGET [libFuzzer options and corpus dirs]   (coverage-guided, atheris)
    python3 tests/fuzz/run.py --seconds N                                       (every target, as CI does)
"""

from __future__ import annotations

import os
import sys
import tempfile

# Where targets write the input before reading it as a file (the readers take paths); tmpfs when present.
_SCRATCH = tempfile.mkdtemp(prefix="msvision-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


def _as_file(data: bytes, name: str) -> str:
    path = os.path.join(_SCRATCH, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def torch_zip(data: bytes) -> None:
    from msvision.checkpoint import load_torch, state_dict_from

    state_dict_from(load_torch(_as_file(data, "pytorch_model.pt")), param_key="params")


torch_legacy = torch_zip  # the same reader; the seeds differ (legacy pickle streams)


def pickle_stream(data: bytes) -> None:
    """The restricted pickle machine on its own, with torch's allow-list and a storage-providing loader."""
    from msvision.checkpoint.safe_pickle import TORCH_GLOBALS, Budget, TorchStorage, resolve, restricted_load

    def persistent(pid):
        stype = pid[1] if isinstance(pid, tuple) and len(pid) > 4 else None
        numel = pid[4] if isinstance(pid, tuple) and len(pid) > 4 else None
        if not hasattr(stype, "itemsize") or not isinstance(numel, int) or not 0 <= numel < 1 << 16:
            from msvision.checkpoint import CheckpointError

            raise CheckpointError("fuzz: unsupported persistent id")
        return TorchStorage(stype, numel, "k", loader=lambda n: bytes(min(n, numel * stype.itemsize)))

    obj, _ = restricted_load(data, "fuzz.pkl", TORCH_GLOBALS, persistent, encoding="utf-8")
    resolve(obj, "fuzz.pkl", Budget(4 * len(data) + (1 << 20), "fuzz.pkl"))


def npy(data: bytes) -> None:
    from msvision.checkpoint import load_npy

    load_npy(_as_file(data, "weights.npy"))


def configuration(data: bytes) -> None:
    """configuration.json as pipeline() reads it, then the NAFNet settings it would take from it."""
    from msvision.hub import read_configuration
    from msvision.models.nafnet import _network_settings

    directory = os.path.join(_SCRATCH, "model")
    os.makedirs(directory, exist_ok=True)
    _as_file(data, os.path.join("model", "configuration.json"))
    config = read_configuration(directory)
    try:
        _network_settings(config, "configuration.json")
    except Exception as e:  # noqa: BLE001 - re-raised unless it is the documented error
        from msvision.errors import InvalidModelError

        if not isinstance(e, InvalidModelError):
            raise


_STRUCTURE = (
    "[{'class': 'ConvKXBNRELU', 'in': 3, 'k': 3, 'out': 8, 's': 1},\n"
    " {'class': 'SuperResConvK1KX', 'in': 8, 'out': 16, 'k': 3, 's': 2, 'L': 1, 'btn': 8}]\n"
)


def python_config(data: bytes) -> None:
    """DAMO-YOLO's damoyolo.py as the model reads it: the literal evaluator, then the settings it takes (the
    structure file it names is a fixed valid one)."""
    from msvision.models.damoyolo import read_config

    directory = os.path.join(_SCRATCH, "damoyolo")
    os.makedirs(directory, exist_ok=True)
    _as_file(data, os.path.join("damoyolo", "damoyolo.py"))
    for name in ("tinynas_L25_k1kx.txt", "structure.txt"):
        _as_file(_STRUCTURE.encode(), os.path.join("damoyolo", name))
    read_config(directory)


def structure(data: bytes) -> None:
    """A TinyNAS structure file (whitespace removed, ast.literal_eval, block checks)."""
    from msvision.models.damoyolo import _structure

    _structure(_as_file(data, "structure.txt"))


def label_map(data: bytes) -> None:
    """label_map.pkl through the allow-list unpickler, then the class names looked up in it."""
    from msvision.models.damoyolo import read_label_names

    read_label_names(_as_file(data, "label_map.pkl"), 3)


def image(data: bytes) -> None:
    """An image file as every pipeline decodes it (LoadImage semantics, pixel limit, EXIF transpose)."""
    from msvision.io import load_image_array

    load_image_array(_as_file(data, "input.img"))


def graphdef(data: bytes) -> None:
    """A TensorFlow frozen graph (GraphDef .pb) through the wire-format reader: nodes, attrs and constants."""
    from msvision.importers.tf.graphdef import read_graphdef

    read_graphdef(_as_file(data, "tf_graph.pb"))


TARGETS = {
    "torch_zip": torch_zip,
    "torch_legacy": torch_legacy,
    "pickle": pickle_stream,
    "npy": npy,
    "configuration": configuration,
    "python_config": python_config,
    "structure": structure,
    "label_map": label_map,
    "image": image,
    "graphdef": graphdef,
}


def expected_errors() -> tuple[type, ...]:
    from msvision.errors import InvalidInputError, InvalidModelError

    return (InvalidModelError, InvalidInputError)


def run_one(target: str, data: bytes) -> None:
    """Runs one input; raises only what is not an expected error."""
    try:
        TARGETS[target](data)
    except expected_errors():
        pass


def main() -> None:
    import atheris

    target = sys.argv[1]
    if target not in TARGETS:
        sys.exit(f"unknown target {target!r}; targets: {', '.join(TARGETS)}")
    with atheris.instrument_imports(include=["msvision", "PIL"]):
        import PIL.Image  # noqa: F401  (instrumented: its Python plugins parse the image headers)

        import msvision.checkpoint  # noqa: F401
        import msvision.hub  # noqa: F401
        import msvision.importers.tf.graphdef  # noqa: F401
        import msvision.io  # noqa: F401
        import msvision.models.damoyolo  # noqa: F401
        import msvision.models.nafnet  # noqa: F401
    expected = expected_errors()
    fn = TARGETS[target]

    def one_input(data: bytes) -> None:
        try:
            fn(data)
        except expected:
            pass

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
