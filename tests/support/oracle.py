"""The oracle: ModelScope's own ``pipeline()`` on the same model directory (torch on the CPU; torchvision's
test-only stand-in from tests/stubs is first on sys.path, see conftest.py)."""


def modelscope_pipeline(task: str, model_dir: str, **kwargs):
    """``modelscope.pipelines.pipeline(task, model=model_dir, **kwargs)``."""
    from modelscope.pipelines import pipeline

    return pipeline(task, model=model_dir, **kwargs)
