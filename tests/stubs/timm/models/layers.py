"""Import-only names of ``timm.models.layers`` (see ``timm/__init__.py``)."""

from .. import _unavailable

Swish = create_conv2d = create_pool2d = get_act_layer = _unavailable
