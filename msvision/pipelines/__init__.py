"""Pipelines: ``pipeline(task, model=...)`` as in ModelScope, one module per task under ``cv/``."""

from .base import Pipeline
from .builder import pipeline

__all__ = ["Pipeline", "pipeline"]
