"""Task names, model file names and framework names, spelled exactly as ModelScope spells them.

Attribute names use ``_``; values use ``-`` (``Tasks.image_denoising == 'image-denoising'``), so code written
as ``pipeline(Tasks.face_detection, ...)`` against ModelScope runs unchanged against msvision.
"""

__all__ = ["DEFAULT_MODEL_REVISION", "Devices", "Frameworks", "ModelFile", "Tasks"]

DEFAULT_MODEL_REVISION = "master"


class Tasks:
    """Task names (a subset of ModelScope's ``Tasks``: the computer-vision ones msvision knows about)."""

    # image restoration / editing
    image_denoising = "image-denoising"
    image_deblurring = "image-deblurring"
    image_super_resolution = "image-super-resolution"
    image_colorization = "image-colorization"
    image_color_enhancement = "image-color-enhancement"
    image_inpainting = "image-inpainting"
    image_portrait_enhancement = "image-portrait-enhancement"
    skin_retouching = "skin-retouching"
    image_body_reshaping = "image-body-reshaping"
    image_portrait_stylization = "image-portrait-stylization"

    # detection
    face_detection = "face-detection"
    human_detection = "human-detection"
    image_object_detection = "image-object-detection"
    domain_specific_object_detection = "domain-specific-object-detection"

    # keypoints / recognition
    body_2d_keypoints = "body-2d-keypoints"
    face_2d_keypoints = "face-2d-keypoints"
    face_recognition = "face-recognition"
    image_classification = "image-classification"

    # segmentation / matting
    portrait_matting = "portrait-matting"
    universal_matting = "universal-matting"
    image_segmentation = "image-segmentation"
    semantic_segmentation = "semantic-segmentation"

    # OCR
    ocr_detection = "ocr-detection"
    ocr_recognition = "ocr-recognition"

    # embeddings
    image_embedding = "image-embedding"
    multi_modal_embedding = "multi-modal-embedding"


class ModelFile:
    """File names inside a ModelScope model directory."""

    CONFIGURATION = "configuration.json"
    README = "README.md"
    TORCH_MODEL_FILE = "pytorch_model.pt"
    TORCH_MODEL_BIN_FILE = "pytorch_model.bin"
    TF_GRAPH_FILE = "tf_graph.pb"
    TF_SAVED_MODEL_FILE = "saved_model.pb"
    ONNX_MODEL_FILE = "model.onnx"
    LABEL_MAPPING = "label_mapping.json"
    CONFIG = "config.json"


class Frameworks:
    """Values of ``configuration.json`` ``framework``."""

    torch = "pytorch"
    tf = "tensorflow"


class Devices:
    """Device kinds accepted in ``device=`` strings (msvision always computes on the CPU)."""

    cpu = "cpu"
    gpu = "gpu"
    xpu = "xpu"
