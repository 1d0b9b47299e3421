"""Test-only, import-only stand-in for ``timm``: ModelScope's DAMO-YOLO neck package imports ``timm`` for its
GiraffeNeck (V1) variant, which no DAMO-YOLO model directory uses. Calling anything here is an error."""


def _unavailable(*args, **kwargs):
    raise NotImplementedError("timm is an import-only stand-in in msvision's tests")


create_model = _unavailable
