"""Keys of the result dicts returned by msvision pipelines (same names and values as ModelScope)."""

__all__ = ["OutputKeys"]


class OutputKeys:
    """Result-dict keys, e.g. ``result[OutputKeys.OUTPUT_IMG]``."""

    LOSS = "loss"
    LOGITS = "logits"
    SCORES = "scores"
    SCORE = "score"
    LABEL = "label"
    LABELS = "labels"
    POSES = "poses"
    CAPTION = "caption"
    BOXES = "boxes"
    KEYPOINTS = "keypoints"
    MASKS = "masks"
    DEPTHS = "depths"
    LAYOUT = "layout"
    TEXT = "text"
    POLYGONS = "polygons"
    OUTPUT = "output"
    OUTPUT_IMG = "output_img"
    OUTPUT_IMGS = "output_imgs"
    OUTPUT_VIDEO = "output_video"
    IMG_EMBEDDING = "img_embedding"
    TEXT_EMBEDDING = "text_embedding"
    PREDICTION = "prediction"
    PREDICTIONS = "predictions"
    PROBABILITIES = "probabilities"
    TIMESTAMPS = "timestamps"
    MATCHES = "matches"
