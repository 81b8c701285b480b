"""Layers of a model by module name, with the output shape each gives for an input size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerInfo:
    name: str  # dotted module name, e.g. "body._blocks.10" or "layer4"
    kind: str  # the module's class name
    shape: tuple[int, ...]  # output shape without the batch dimension, e.g. (512, 4, 4)

    @property
    def channels(self) -> int:
        return self.shape[0] if self.shape else 0


@torch.no_grad()
def list_layers(model: nn.Module, input_size: int, in_channels: int = 3) -> list[LayerInfo]:
    """Every named module whose output is a 4-D feature map `(B, C, H, W)`, in forward order,
    with that map's shape for a `input_size` x `input_size` input. The model is put in eval
    mode here (and left there)."""
    model.eval()
    found: dict[str, LayerInfo] = {}
    hooks = []
    for name, module in model.named_modules():
        if not name:  # the model itself
            continue

        def hook(mod, args, out, name=name):
            if isinstance(out, torch.Tensor) and out.dim() == 4 and name not in found:
                found[name] = LayerInfo(name, type(mod).__name__, tuple(out.shape[1:]))

        hooks.append(module.register_forward_hook(hook))
    device = next(model.parameters()).device
    try:
        model(torch.zeros(1, in_channels, input_size, input_size, device=device))
    finally:
        for h in hooks:
            h.remove()
    return list(found.values())


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called `name`; an unknown name answers with the names there are."""
    modules = dict(model.named_modules())
    if name not in modules or not name:
        names = [n for n in modules if n]
        shown = ", ".join(names[:40]) + (f", … ({len(names)} in all)" if len(names) > 40 else "")
        raise ValueError(f"no layer {name!r} in {type(model).__name__}; layers: {shown}")
    return modules[name]


def default_cam_layer(layers: list[LayerInfo]) -> str:
    """The last convolutional block that still has a spatial map (Grad-CAM's usual choice):
    `layer4` of a ResNet, the head convolution of an EfficientNet."""
    spatial = [layer for layer in layers if len(layer.shape) == 3 and layer.shape[1] > 1]
    if not spatial:
        raise ValueError("the model has no layer with a spatial feature map")
    blocks = [
        layer for layer in spatial
        if "Conv" in layer.kind or "Block" in layer.kind or layer.kind in ("Sequential",)
    ]  # fmt: skip
    return (blocks or spatial)[-1].name


class _Reached(Exception):
    """Raised by a capture hook to skip the rest of the network: only the layer is needed."""


class LayerCapture:
    """Context manager keeping the output of one layer (`.output`). With `stop=True`, the
    forward pass ends at that layer (call it through `run`), which halves the cost of
    optimising an early layer's activation."""

    def __init__(self, model: nn.Module, name: str, stop: bool = False) -> None:
        self.model, self.layer, self.stop = model, get_layer(model, name), stop
        self.output: torch.Tensor | None = None

    def __enter__(self) -> LayerCapture:
        self._hook = self.layer.register_forward_hook(self._keep)
        return self

    def _keep(self, module, args, out) -> None:
        self.output = out
        if self.stop:
            raise _Reached

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output for input `x`."""
        try:
            self.model(x)
        except _Reached:
            pass
        return self.output

    def __exit__(self, *exc) -> None:
        self._hook.remove()
