"""Why did the network predict that? Attribution maps through Captum (`captum.attr`).

Integrated Gradients, Saliency, Grad-CAM on the last convolutional block, and Occlusion,
for the predicted class or a chosen one. Each map is returned as an (H, W) array in [0, 1]
at the input's resolution, ready to draw over the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.analysis.layers import default_cam_layer, get_layer, list_layers

METHODS = ("integrated_gradients", "saliency", "grad_cam", "occlusion")
METHOD_LABELS = {
    "integrated_gradients": "Integrated Gradients",
    "saliency": "Saliency",
    "grad_cam": "Grad-CAM",
    "occlusion": "Occlusion",
}


@dataclass
class Attribution:
    target: int  # the class explained
    probabilities: np.ndarray  # (num_classes,) softmax of the model's output
    maps: dict[str, np.ndarray]  # method -> (H, W) in [0, 1]
    cam_layer: str | None = None


def _normalise(a: torch.Tensor) -> np.ndarray:
    """(H, W) attribution -> [0, 1]; the 99th percentile maps to 1 so one pixel cannot wash
    the rest out."""
    a = a.detach().float().cpu()
    top = torch.quantile(a.flatten(), 0.99).clamp_min(1e-12)
    return (a / top).clamp(0, 1).numpy()


def attribute(
    model: nn.Module,
    image: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    target: int | None = None,
    methods: Sequence[str] = METHODS,
    cam_layer: str | None = None,
    ig_steps: int = 32,
) -> Attribution:
    """Attribution maps of `image` ((C, H, W) in [0, 1]) for class `target` (default: the
    predicted class). The model is put in eval mode here."""
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown attribution method(s) {unknown}; choose from {list(METHODS)}")
    model.eval()
    device = next(model.parameters()).device
    m = torch.tensor(list(mean), device=device).view(1, -1, 1, 1)
    s = torch.tensor(list(std), device=device).view(1, -1, 1, 1)
    x = ((image.to(device, torch.float32).unsqueeze(0) - m) / s).contiguous()  # (1, C, H, W)
    h, w = x.shape[-2:]
    with torch.no_grad():
        probs = F.softmax(model(x), dim=1)[0]
    target = int(probs.argmax()) if target is None else int(target)
    if not 0 <= target < len(probs):
        raise ValueError(f"target class {target} does not exist: the model has {len(probs)}")
    maps: dict[str, np.ndarray] = {}
    if "integrated_gradients" in methods:
        # Baseline: the black image, in the model's normalised space.
        baseline = ((torch.zeros_like(image).unsqueeze(0).to(device) - m) / s).contiguous()
        ig = IntegratedGradients(model).attribute(
            x, baselines=baseline, target=target, n_steps=ig_steps, internal_batch_size=ig_steps
        )
        maps["integrated_gradients"] = _normalise(ig[0].abs().sum(0))
    if "saliency" in methods:
        sal = Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=True)
        maps["saliency"] = _normalise(sal[0].max(0).values)
    if "grad_cam" in methods:
        cam_layer = cam_layer or default_cam_layer(list_layers(model, h, x.shape[1]))
        cam = LayerGradCam(model, get_layer(model, cam_layer)).attribute(
            x, target=target, relu_attributions=True
        )
        cam = LayerAttribution.interpolate(cam, (h, w), interpolate_mode="bilinear")
        maps["grad_cam"] = _normalise(cam[0, 0])
    if "occlusion" in methods:
        window = max(2, min(h, w) // 8)
        stride = max(1, window // 2)
        occ = Occlusion(model).attribute(
            x, target=target, sliding_window_shapes=(x.shape[1], window, window),
            strides=(x.shape[1], stride, stride), baselines=0.0,
            perturbations_per_eval=16,
        )  # fmt: skip
        maps["occlusion"] = _normalise(occ[0].sum(0).clamp_min(0))
    model.eval()
    return Attribution(target, probs.cpu().numpy(), maps, cam_layer)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """(H, W, 3) uint8 image with an (H, W) [0, 1] map drawn over it (black-red-yellow)."""
    heat = np.clip(heat, 0, 1)[..., None]
    colour = np.concatenate([np.clip(heat * 2, 0, 1), np.clip(heat * 2 - 1, 0, 1), 0 * heat], -1)
    base = image.astype(np.float32) / 255.0
    out = (1 - alpha * heat) * base + alpha * heat * colour
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
