"""Finding a model directory on local disk, the way ModelScope's ``pipeline(task, model=...)`` would.

msvision never talks to the ModelScope hub. A ``model`` argument is resolved to a local directory holding
``configuration.json``:

* an existing local directory is used as is;
* a hub id ``'owner/name'`` is looked up in the ModelScope download cache, in every layout that ModelScope
  releases have written (see :func:`hub_cache_candidates`);
* ``None`` means the task's default model (ModelScope's ``DEFAULT_MODEL_FOR_PIPELINE``) if it is cached, else a
  small model shipped inside msvision for the task, if there is one.

Nothing found raises :class:`~msvision.errors.ModelNotFoundError` listing every path that was tried.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import InvalidModelError, ModelNotFoundError, UnsupportedTaskError
from ..utils.constant import ModelFile, Tasks

__all__ = [
    "DEFAULT_MODEL_FOR_TASK",
    "cached_model_dirs",
    "EMBEDDED_DEFAULT_FOR_TASK",
    "SUPPORTED_TASKS",
    "hub_cache_candidates",
    "is_hub_id",
    "model_cache_root",
    "read_configuration",
    "resolve_model_dir",
    "validate_device",
]

# Task -> default hub id, for the tasks msvision runs today (values from modelscope/metainfo.py
# DEFAULT_MODEL_FOR_PIPELINE).
DEFAULT_MODEL_FOR_TASK: dict[str, str] = {
    Tasks.image_denoising: "damo/cv_nafnet_image-denoise_sidd",
    Tasks.image_deblurring: "damo/cv_nafnet_image-deblur_gopro",
    Tasks.face_detection: "damo/cv_resnet101_face-detection_cvpr22papermogface",
    # ModelScope's default here is a YOLOX model msvision does not run: DAMO-YOLO-S instead (see the README)
    Tasks.image_object_detection: "damo/cv_tinynas_object-detection_damoyolo",
    Tasks.body_2d_keypoints: "damo/cv_hrnetv2w32_body-2d-keypoints_image",
    Tasks.image_portrait_enhancement: "damo/cv_gpen_image-portrait-enhancement",
    Tasks.image_portrait_stylization: "damo/cv_unet_person-image-cartoon_compound-models",
    Tasks.portrait_matting: "damo/cv_unet_image-matting",
    Tasks.universal_matting: "damo/cv_unet_universal-matting",
}

_PACKAGE_DIR = Path(__file__).absolute().parent.parent

# Task -> model directory shipped inside the msvision package, used when model=None and the task's default
# hub model is not cached. The directories need not exist at import time.
EMBEDDED_DEFAULT_FOR_TASK: dict[str, Path] = {
    Tasks.image_denoising: _PACKAGE_DIR / "default_models" / "nafnet_denoise",
}

# Tasks resolve_model_dir accepts. Extend this set when a pipeline for a new task lands.
# Tasks without a default model (ModelScope has none either): model= is required.
TASKS_WITHOUT_DEFAULT: set[str] = {Tasks.domain_specific_object_detection}
SUPPORTED_TASKS: set[str] = (
    set(DEFAULT_MODEL_FOR_TASK) | set(EMBEDDED_DEFAULT_FOR_TASK) | TASKS_WITHOUT_DEFAULT
)

# 'owner/name' with ModelScope's id characters (letters, digits, '_', '-', '.').
_HUB_ID_RE = re.compile(r"^([\w.-]+)/([\w.-]+)$")

_REVISION_RE = re.compile(r"^[\w.+-]+$")

_MAX_CONFIG_BYTES = 16 * 1024 * 1024


def model_cache_root() -> Path:
    """ModelScope's model cache root: ``$MODELSCOPE_CACHE``, else ``~/.cache/modelscope/hub``."""
    env = os.environ.get("MODELSCOPE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "modelscope" / "hub"


def _hub_root() -> Path:
    """Cache root of modelscope-hub (ModelScope >= 1.38): ``$MODELSCOPE_CACHE``, else ``~/.cache/modelscope``."""
    env = os.environ.get("MODELSCOPE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "modelscope"


def _cache_roots() -> list[Path]:
    """The two roots old model layouts live under: ``model_cache_root()``, then ``~/.cache/modelscope`` (the
    modelscope-hub root) when ``MODELSCOPE_CACHE`` is unset, ``$MODELSCOPE_CACHE/hub`` when it is set."""
    root = model_cache_root()
    return [root, root / "hub"] if os.environ.get("MODELSCOPE_CACHE") else [root, _hub_root()]


def is_hub_id(model: str) -> bool:
    """True if ``model`` has the shape of a hub id ``'owner/name'``."""
    m = _HUB_ID_RE.match(model)
    return bool(m) and all(part not in (".", "..") for part in m.groups())


def _dedup(paths):
    seen = set()
    out = []
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _snapshot_candidates(repo_dir: Path, revision: str | None) -> list[Path]:
    """Snapshot dirs of the modelscope-hub layout ``<repo_dir>/snapshots/<revision>``, best first."""
    snapshots = repo_dir / "snapshots"
    names = [revision] if revision else []
    names += ["master", "main"]
    out = [snapshots / n for n in names]
    if not revision and snapshots.is_dir():
        # Without an explicit revision, a single cached snapshot is unambiguous.
        try:
            children = sorted(p for p in snapshots.iterdir() if p.is_dir())
        except OSError:
            children = []
        if len(children) == 1:
            out.append(children[0])
    return out


def hub_cache_candidates(model_id: str, revision: str | None = None) -> list[Path]:
    """Every directory where some ModelScope release may have stored hub model ``model_id``, in search order.

    With ``R = model_cache_root()`` (``$MODELSCOPE_CACHE`` or ``~/.cache/modelscope/hub``):

    1. ``R/models/<owner>/<name>`` -- layout of ModelScope 1.24-1.37;
    2. ``R/<owner>/<name>`` -- layout before 1.24;

    then the same two under a second root: ``~/.cache/modelscope`` (the root modelscope-hub, used by
    ModelScope >= 1.38, defaults to) when ``MODELSCOPE_CACHE`` is unset, ``$MODELSCOPE_CACHE/hub`` when it is set
    (ModelScope 1.40 probes both for old downloads). Each is tried first with ``.`` replaced by
    ``___`` in the whole id (what old SDKs wrote: they masked ``owner/name`` as a whole), then in the name
    only (what modelscope-hub probes), then unmasked. Last comes the modelscope-hub layout
    ``<B>/models/<owner>--<name>/snapshots/<revision>`` (``B`` = ``$MODELSCOPE_CACHE`` or
    ``~/.cache/modelscope``; names are not masked there), trying ``revision``, ``master``, ``main`` and, with
    no revision given, the only snapshot if there is exactly one.
    """
    m = _HUB_ID_RE.match(model_id)
    if not m:
        raise ValueError(f"not a hub id of the form 'owner/name': {model_id!r}")
    owner, name = m.groups()
    variants = _dedup(
        [
            (owner.replace(".", "___"), name.replace(".", "___")),
            (owner, name.replace(".", "___")),
            (owner, name),
        ]
    )
    out: list[Path] = []
    for root in _cache_roots():
        for o, n in variants:
            out.append(root / "models" / o / n)
        for o, n in variants:
            out.append(root / o / n)
    out += _snapshot_candidates(_hub_root() / "models" / f"{owner}--{name}", revision)
    return _dedup(out)


def _check_task(task) -> str:
    if not isinstance(task, str):
        raise TypeError(f"task must be a str such as 'image-denoising', got {type(task).__name__}: {task!r}")
    if task not in SUPPORTED_TASKS:
        supported = ", ".join(sorted(SUPPORTED_TASKS))
        hint = ""
        alt = task.strip().lower().replace("_", "-")
        if alt in SUPPORTED_TASKS:
            hint = f" Did you mean {alt!r}?"
        raise UnsupportedTaskError(
            f"task {task!r} is not supported by msvision.{hint} Supported tasks: {supported}"
        )
    return task


def _local_model_dir(path: str) -> str:
    p = Path(path)
    if not p.exists():
        raise ModelNotFoundError(f"model directory {path!r} does not exist")
    if not p.is_dir():
        raise ModelNotFoundError(
            f"model path {path!r} is not a directory; pass a model directory or a hub id"
        )
    cfg = p / ModelFile.CONFIGURATION
    if not cfg.is_file():
        raise ModelNotFoundError(
            f"model directory {path!r} has no {ModelFile.CONFIGURATION} "
            f"(expected {str(cfg)!r}); is it a ModelScope model directory, and is the download complete?"
        )
    return os.path.abspath(path)


def _find_cached(model_id: str, revision: str | None) -> tuple[str | None, list[str]]:
    """Return (first candidate dir holding configuration.json or None, description of every path tried)."""
    tried = []
    for cand in hub_cache_candidates(model_id, revision):
        if (cand / ModelFile.CONFIGURATION).is_file():
            return str(cand), tried
        if cand.is_dir():
            tried.append(f"{cand} (exists, but has no {ModelFile.CONFIGURATION}: incomplete download?)")
        else:
            tried.append(str(cand))
    m = _HUB_ID_RE.match(model_id)
    snapshots = _hub_root() / "models" / f"{m.group(1)}--{m.group(2)}" / "snapshots"
    if not revision and snapshots.is_dir():
        revs = sorted(p.name for p in snapshots.iterdir() if p.is_dir())
        if len(revs) > 1:
            tried.append(
                f"{snapshots} (holds several revisions: {', '.join(revs)}; pass a revision to choose)"
            )
    return None, tried


def _not_cached_error(model_id: str, tried: list[str], extra: str = "") -> ModelNotFoundError:
    listing = "\n".join(f"  - {t}" for t in tried)
    return ModelNotFoundError(
        f"model {model_id!r} is not in the local ModelScope cache, and the ModelScope hub is not reachable "
        f"from msvision (it never downloads). Paths tried:\n{listing}\n"
        f"{extra}"
        f"Download it with modelscope: `from modelscope.hub.snapshot_download import snapshot_download; "
        f"snapshot_download({model_id!r})` (set MODELSCOPE_CACHE to choose where it goes), "
        f"or pass model='/path/to/model_dir' (a directory containing {ModelFile.CONFIGURATION})."
    )


def resolve_model_dir(model, task: str | None, revision: str | None = None) -> str:
    """Return the absolute local directory (containing ``configuration.json``) for ``model`` and ``task``.

    ``model``: a local directory (str or ``os.PathLike``), a hub id ``'owner/name'``, or ``None`` for the task's
    default. ``revision`` only selects a snapshot in the modelscope-hub cache layout (falling back to
    ``master``/``main`` there); older layouts hold a single revision and ignore it. An existing local path wins
    over a hub id of the same spelling, as in ModelScope.

    Raises ``TypeError`` (model not str/PathLike/None), ``ValueError`` (empty model string),
    :class:`UnsupportedTaskError` and :class:`ModelNotFoundError`.
    """
    if model is None or task is not None:  # the task only matters for choosing a default model
        task = _check_task(task)
    if revision is not None:
        if not isinstance(revision, str):
            raise TypeError(f"revision must be a str or None, got {type(revision).__name__}")
        if not _REVISION_RE.match(revision) or revision in (".", ".."):
            raise ValueError(f"invalid revision {revision!r}")
    if model is None:
        return _resolve_default(task, revision)
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
        if isinstance(model, bytes):
            model = os.fsdecode(model)
        return _local_model_dir(os.path.expanduser(model))
    if not isinstance(model, str):
        raise TypeError(
            f"model must be a hub id ('owner/name'), a local model directory (str or os.PathLike) or None; "
            f"got {type(model).__name__}. msvision does not accept model objects."
        )
    if not model.strip():
        raise ValueError("model must not be an empty string (use model=None for the task's default model)")
    local = os.path.expanduser(model)
    if os.path.exists(local):
        return _local_model_dir(local)
    if not is_hub_id(model):
        raise ModelNotFoundError(
            f"model {model!r} is neither an existing local directory nor a ModelScope hub id of the form "
            f"'owner/name'"
        )
    found, tried = _find_cached(model, revision)
    if found is None:
        raise _not_cached_error(model, tried)
    return found


def _resolve_default(task: str, revision: str | None) -> str:
    tried: list[str] = []
    default_id = DEFAULT_MODEL_FOR_TASK.get(task)
    if default_id is not None:
        found, tried = _find_cached(default_id, revision)
        if found is not None:
            return found
    embedded = EMBEDDED_DEFAULT_FOR_TASK.get(task)
    if embedded is not None:
        if (embedded / ModelFile.CONFIGURATION).is_file():
            return str(embedded)
        tried.append(f"{embedded} (model shipped with msvision: missing or incomplete)")
    if default_id is None:
        listing = "\n".join(f"  - {t}" for t in tried)
        raise ModelNotFoundError(
            f"task {task!r} has no default model available to msvision; pass model='owner/name' (already "
            f"downloaded with modelscope's snapshot_download) or model='/path/to/model_dir'."
            + (f" Paths tried:\n{listing}" if tried else "")
        )
    raise _not_cached_error(
        default_id,
        tried,
        extra=f"(model=None selects {default_id!r}, the default model for task {task!r}.)\n",
    )


def read_configuration(model_dir) -> dict:
    """Parse ``<model_dir>/configuration.json`` as plain JSON (nothing is executed) and return the dict.

    Raises :class:`ModelNotFoundError` if the file is missing, :class:`InvalidModelError` if it is not a JSON
    object with a non-empty string ``task``.
    """
    path = Path(os.fspath(model_dir)) / ModelFile.CONFIGURATION
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelNotFoundError(f"{ModelFile.CONFIGURATION} not found: {str(path)!r}") from None
    if size > _MAX_CONFIG_BYTES:
        raise InvalidModelError(
            f"{str(path)!r} is {size} bytes; a configuration.json over 16 MiB is not plausible"
        )
    try:
        with open(path, encoding="utf-8-sig") as f:
            cfg = json.load(f)
    except UnicodeDecodeError as e:
        raise InvalidModelError(f"{str(path)!r} is not UTF-8 text: {e}") from e
    except json.JSONDecodeError as e:
        raise InvalidModelError(f"{str(path)!r} is not valid JSON: {e}") from e
    except RecursionError:
        raise InvalidModelError(
            f"{str(path)!r} nests its JSON values too deeply to be a configuration"
        ) from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise InvalidModelError(f"{str(path)!r} holds a value that cannot be read: {e}") from None
    if not isinstance(cfg, dict):
        raise InvalidModelError(f"{str(path)!r} must hold a JSON object, found {type(cfg).__name__}")
    task = cfg.get("task")
    if not isinstance(task, str) or not task:
        raise InvalidModelError(f"{str(path)!r} has no 'task' string (found {task!r})")
    return cfg


_DEVICE_RE = re.compile(r"^(cpu|gpu|cuda|xpu)(:\d+)?$")


def validate_device(device) -> str:
    """Check a ``device=`` value as ModelScope's pipeline builder would; return the device msvision uses.

    Accepted (case-insensitive, like ModelScope): ``None``, ``''``, ``'cpu'``, ``'gpu'``, ``'cuda'``, ``'xpu'``,
    and ``'gpu:N'``, ``'cuda:N'``, ``'xpu:N'``, ``'cpu:N'`` with a non-negative integer ``N``. msvision always runs
    on the CPU, so the return value is always ``'cpu'``. Raises ``ValueError`` for any other string and
    ``TypeError`` for a non-string.
    """
    if device is None:
        return "cpu"
    if not isinstance(device, str):
        raise TypeError(
            f"device must be a str such as 'cpu' or 'gpu:0', got {type(device).__name__}: {device!r}"
        )
    if device == "":  # ModelScope's builder treats a falsy device as the default
        return "cpu"
    if not _DEVICE_RE.match(device.lower()):
        raise ValueError(
            f"invalid device {device!r}: expected 'cpu', 'gpu', 'cuda', 'xpu' or 'gpu:N' / 'cuda:N' / 'xpu:N' "
            f"(N a device ordinal). msvision computes on the CPU whatever the device."
        )
    return "cpu"


def cached_model_dirs() -> list[tuple[str, Path]]:
    """(hub id, directory) of every model directory in the ModelScope cache, in any layout
    :func:`hub_cache_candidates` searches (``___`` in stored names read back as ``.``), sorted by id."""
    found: dict[str, Path] = {}

    def add(model_id: str, path: Path) -> None:
        if (path / "configuration.json").is_file() and model_id not in found:
            found[model_id] = path

    def children(path: Path) -> list[Path]:
        try:
            return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return []

    for base in _dedup(_cache_roots() + [_hub_root()]):
        for parent in (base / "models", base):
            for owner in children(parent):
                if "--" in owner.name:  # modelscope-hub: models/<owner>--<name>/snapshots/<revision>
                    model_id = owner.name.replace("--", "/", 1)
                    for snapshot in _snapshot_candidates(owner, None) + children(owner / "snapshots"):
                        add(model_id, snapshot)
                    continue
                for name in children(owner):
                    add(f"{owner.name}/{name.name}".replace("___", "."), name)
    return sorted(found.items())
