"""``pipeline()``: ModelScope's entry point. Resolves the model directory, reads configuration.json and picks the
implementation from its ``task`` and ``pipeline.type`` (never from the model id)."""

from __future__ import annotations

import importlib
import os
from typing import Any

from ..errors import InvalidModelError, UnsupportedTaskError
from ..hub import read_configuration, resolve_model_dir, validate_device
from ..utils.constant import Tasks
from .base import Pipeline

# task -> pipeline.type -> "module:Class" under msvision.pipelines.cv, imported when first used
PIPELINES = {
    Tasks.image_denoising: {"nafnet-image-denoise": "image_restoration_pipeline:ImageDenoisePipeline"},
    Tasks.image_deblurring: {"nafnet-image-deblur": "image_restoration_pipeline:ImageDeblurPipeline"},
    Tasks.face_detection: {
        "manual-face-detection-ulfd": "ulfd_face_detection_pipeline:UlfdFaceDetectionPipeline",
        "manual-face-detection-mtcnn": "mtcnn_face_detection_pipeline:MtcnnFaceDetectionPipeline",
        "resnet101-face-detection-cvpr22papermogface": "mog_face_detection_pipeline:MogFaceDetectionPipeline",
        "resnet50-face-detection-retinaface": "retina_face_detection_pipeline:RetinaFaceDetectionPipeline",
    },
    Tasks.image_object_detection: {
        "tinynas-detection": "tinynas_detection_pipeline:TinynasDetectionPipeline"
    },
    Tasks.domain_specific_object_detection: {
        "tinynas-detection": "tinynas_detection_pipeline:TinynasDetectionPipeline"
    },
    Tasks.body_2d_keypoints: {
        "hrnetv2w32_body-2d-keypoints_image": "body_2d_keypoints_pipeline:Body2DKeypointsPipeline"
    },
    Tasks.image_portrait_enhancement: {
        "gpen-image-portrait-enhancement": "image_portrait_enhancement_pipeline:ImagePortraitEnhancementPipeline"
    },
    Tasks.image_portrait_stylization: {
        "unet-person-image-cartoon": "image_cartoon_pipeline:ImageCartoonPipeline"
    },
    Tasks.portrait_matting: {"unet-image-matting": "image_matting_pipeline:ImageMattingPipeline"},
    Tasks.universal_matting: {"unet-universal-matting": "image_matting_pipeline:ImageMattingPipeline"},
}
# keyword arguments of pipeline() that only some implementations take (their class attribute ``options``)
PIPELINE_OPTIONS = {"human_detector"}


def _implementation(target: str):
    module, cls = target.split(":")
    return getattr(importlib.import_module(f"{__package__}.cv.{module}"), cls)


def _pipeline_type(config: dict, path: str):
    section = config.get("pipeline")
    if section is None:
        return None
    if not isinstance(section, dict) or not isinstance(section.get("type", ""), str):
        raise InvalidModelError(f"{path}: 'pipeline' must be an object with a string 'type'")
    return section.get("type")


def pipeline(
    task: str | None = None,
    model: str | os.PathLike | None = None,
    preprocessor: None = None,
    config_file: None = None,
    pipeline_name: str | None = None,
    framework: str | None = None,
    device: str | None = None,
    model_revision: str | None = "master",
    ignore_file_pattern: Any = None,
    trust_remote_code: bool = False,
    threads: int | None = None,
    memory_limit: int | None = None,
    precision: str = "fp32",
    **kwargs: Any,
) -> Pipeline:
    """Create a pipeline like ``modelscope.pipelines.pipeline``.

    Args:
        task: a ``Tasks`` value, e.g. ``'image-denoising'``. May be omitted when ``model`` is given.
        model: a local model directory, a hub id already in the ModelScope cache, or None for the task default.
        pipeline_name: overrides configuration.json's ``pipeline.type``.
        device: accepted like ModelScope's (``cpu``, ``gpu``, ``cuda:0``...); msvision always runs on the CPU.
        threads: CPU threads (default: MSVISION_NUM_THREADS, OMP_NUM_THREADS, or all CPUs of this process).
        memory_limit: activation bytes one network call may need (default: MSVISION_MEMORY_LIMIT, else 8 GiB);
            an input needing more raises MemoryLimitError.
        precision: "fp32" (default: ModelScope's arithmetic) or "bf16" (convolutions on bf16 inputs and weights,
            about twice as fast on CPUs with AVX512_BF16 or AMX); a model that does not meet its bf16 accuracy
            gate refuses it with UnsupportedPrecisionError (see README).
    ``preprocessor`` and ``config_file`` (torch-side customisation) are not supported.
    """
    if preprocessor is not None:
        raise NotImplementedError("custom preprocessors are not supported by msvision")
    if config_file is not None:
        raise NotImplementedError(
            "config_file is not supported by msvision; put configuration.json in the model dir"
        )
    if framework not in (None, "pytorch", "tensorflow"):
        raise ValueError(f"unknown framework {framework!r}")
    if set(kwargs) - PIPELINE_OPTIONS:
        raise TypeError(
            f"pipeline() got unexpected keyword arguments {sorted(set(kwargs) - PIPELINE_OPTIONS)}"
        )
    validate_device(device)
    if task is None and model is None:
        raise ValueError("pipeline() needs a task or a model")
    if task is None:  # ModelScope takes the task from the model's configuration.json
        task = read_configuration(resolve_model_dir(model, None, revision=model_revision)).get("task")
    if not isinstance(task, str):
        raise TypeError(f"task must be a str, got {type(task).__name__}")
    if task not in PIPELINES:
        raise UnsupportedTaskError(
            f"task {task!r} is not supported by msvision; supported: {sorted(PIPELINES)}"
        )
    model_dir = resolve_model_dir(model, task, revision=model_revision)
    config = read_configuration(model_dir)
    config_path = f"{model_dir}/configuration.json"
    if config.get("task") != task:
        raise InvalidModelError(f"{config_path} is a {config.get('task')!r} model, not {task!r}")
    name = pipeline_name or _pipeline_type(config, config_path)
    impls = PIPELINES[task]
    if name not in impls:
        raise UnsupportedTaskError(
            f"{config_path}: pipeline type {name!r} for task {task!r} is not supported by msvision; "
            f"supported: {sorted(impls)}"
        )
    implementation = _implementation(impls[name])
    unused = set(kwargs) - set(getattr(implementation, "options", ()))
    if unused:
        raise TypeError(f"pipeline() for task {task!r} takes no keyword arguments {sorted(unused)}")
    built = implementation(
        model_dir, config, threads=threads, memory_limit=memory_limit, precision=precision, **kwargs
    )
    built.recipe.update(pipeline_name=name, **kwargs)
    return built
