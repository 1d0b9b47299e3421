"""``torchvision.models._utils.IntermediateLayerGetter``, from its documentation: a module wrapping ``model``'s
direct children up to the last one named in ``return_layers`` (a dict child name -> output name), run in
registration order; ``forward`` returns an OrderedDict output name -> that child's output. Its state dict keys are
the children's own (``body.layer2...`` under RetinaFace's ``body``)."""

from collections import OrderedDict

from torch import nn


class IntermediateLayerGetter(nn.ModuleDict):
    def __init__(self, model, return_layers):
        if not set(return_layers).issubset(name for name, _ in model.named_children()):
            raise ValueError("return_layers are not present in model")
        wanted = {str(k): str(v) for k, v in return_layers.items()}
        remaining = dict(wanted)
        layers = OrderedDict()
        for name, module in model.named_children():
            layers[name] = module
            remaining.pop(name, None)
            if not remaining:
                break
        super().__init__(layers)
        self.return_layers = wanted

    def forward(self, x):
        out = OrderedDict()
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out
