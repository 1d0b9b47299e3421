"""The oracle: ModelScope's own ``pipeline()`` on the same model directory (torch on the CPU; torchvision's
test-only stand-in from tests/stubs is first on sys.path, see conftest.py)."""


def modelscope_pipeline(task: str, model_dir: str, **kwargs):
    """``modelscope.pipelines.pipeline(task, model=model_dir, **kwargs)``."""
    from modelscope.pipelines import pipeline

    return pipeline(task, model=model_dir, **kwargs)


def modelscope_keypoints_pipeline(model_dir: str, detector, patch=setattr):
    """ModelScope's body-2d-keypoints pipeline on ``model_dir`` with its hard-coded mmdet human detector replaced
    by ``detector`` (set with ``patch(module, 'pipeline', ...)``: pytest's ``monkeypatch.setattr`` in tests), and
    its image handed over as a torch tensor: ModelScope 1.40 calls ``.clone()`` on it, which a NumPy array lacks."""
    import modelscope.pipelines.cv.body_2d_keypoints_pipeline as theirs_module
    import numpy as np
    import torch
    from modelscope.pipelines import pipeline

    patch(theirs_module, "pipeline", lambda *args, **kwargs: detector)
    pipe = pipeline("body-2d-keypoints", model=model_dir)
    preprocess = pipe.preprocess

    def tensor_image(x):
        out = preprocess(x)
        out["image"] = torch.from_numpy(np.ascontiguousarray(out["image"]))
        return out

    pipe.preprocess = tensor_image
    return pipe
