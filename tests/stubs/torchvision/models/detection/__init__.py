"""``torchvision.models.detection``: only importable (ModelScope's RetinaFace imports ``backbone_utils`` and uses
nothing from it)."""

from . import backbone_utils  # noqa: F401
