"""Local model resolution (msvision never downloads from the ModelScope hub)."""

from .resolve import (
    DEFAULT_MODEL_FOR_TASK,
    EMBEDDED_DEFAULT_FOR_TASK,
    SUPPORTED_TASKS,
    cached_model_dirs,
    hub_cache_candidates,
    is_hub_id,
    model_cache_root,
    read_configuration,
    resolve_model_dir,
    validate_device,
)

__all__ = [
    "DEFAULT_MODEL_FOR_TASK",
    "EMBEDDED_DEFAULT_FOR_TASK",
    "SUPPORTED_TASKS",
    "cached_model_dirs",
    "hub_cache_candidates",
    "is_hub_id",
    "model_cache_root",
    "read_configuration",
    "resolve_model_dir",
    "validate_device",
]
