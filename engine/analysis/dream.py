"""DeepDream and activation maximisation: images that make a layer (or one channel) fire.

Both ascend the gradient of a layer's activation with respect to the input image. DeepDream
starts from a real image and works over octaves (coarse to fine), so the network's patterns
grow out of the photo; activation maximisation starts from noise, and with a Fourier,
colour-decorrelated parameterisation and random jitter / scale / rotation at every step
(Olah et al., "Feature Visualization", Distill 2017) gives far cleaner images than raw pixels.

Images are (3, H, W) float tensors in [0, 1]; the model sees (image - mean) / std.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from engine.analysis.layers import LayerCapture

Progress = Callable[[int, int], None]  # (steps done, steps in all)

# Square root of the colour covariance of ImageNet images (as in lucid): optimising in this
# decorrelated space keeps the colours natural.
_COLOUR_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float32
)
_COLOUR = _COLOUR_SQRT / _COLOUR_SQRT.norm(dim=0).max()


@dataclass
class Visualisation:
    image: torch.Tensor  # (C, H, W) in [0, 1]
    steps: list[torch.Tensor] = field(default_factory=list)  # intermediate images, in order
    objective: list[float] = field(default_factory=list)  # the objective after each step


def _objective(act: torch.Tensor, channel: int | None, neuron: bool) -> torch.Tensor:
    """Mean activation of the layer (or of one channel); `neuron`: its centre position only."""
    if channel is None:
        return act.pow(2).mean()  # DeepDream's "whatever the layer sees": the L2 norm
    if channel >= act.shape[1]:
        raise ValueError(f"channel {channel} does not exist: the layer has {act.shape[1]}")
    if neuron:
        return act[:, channel, act.shape[2] // 2, act.shape[3] // 2].mean()
    return act[:, channel].mean()


class _Frozen:
    """Eval mode and no parameter gradients for the duration: only the image is optimised."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> nn.Module:
        self.modes = [m.training for m in self.model.modules()]  # each module's own mode
        self.grads = [p.requires_grad for p in self.model.parameters()]
        self.model.eval().requires_grad_(False)
        return self.model

    def __exit__(self, *exc) -> None:
        for p, g in zip(self.model.parameters(), self.grads, strict=True):
            p.requires_grad_(g)
        for m, training in zip(self.model.modules(), self.modes, strict=True):
            m.training = training


def _stats(mean: Sequence[float], std: Sequence[float], device) -> tuple[torch.Tensor, ...]:
    m = torch.tensor(list(mean), device=device).view(1, -1, 1, 1)
    s = torch.tensor(list(std), device=device).view(1, -1, 1, 1)
    return m, s


def deep_dream(
    model: nn.Module,
    image: torch.Tensor,
    layer: str,
    mean: Sequence[float],
    std: Sequence[float],
    channel: int | None = None,
    octaves: int = 3,
    octave_scale: float = 1.4,
    iterations: int = 10,
    step_size: float = 0.02,
    jitter: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> Visualisation:
    """DeepDream on `image` ((C, H, W) in [0, 1]): gradient ascent on the layer's activation
    norm (or one channel's mean), from the smallest octave to the full size, carrying the
    detail up; each step is normalised by its mean absolute gradient and the image is rolled
    by a random jitter so the patterns do not lock to the pixel grid."""
    device = next(model.parameters()).device
    base = image.to(device, torch.float32).unsqueeze(0)  # (1, C, H, W)
    h, w = base.shape[-2:]
    m, s = _stats(mean, std, device)
    jitter = max(1, min(h, w) // 16) if jitter is None else jitter
    g = torch.Generator().manual_seed(seed)
    sizes = [
        (max(8, round(h / octave_scale**k)), max(8, round(w / octave_scale**k)))
        for k in reversed(range(octaves))
    ]
    result = Visualisation(image=image)
    detail = torch.zeros(1, base.shape[1], *sizes[0], device=device)
    total, done = octaves * iterations, 0
    with _Frozen(model), LayerCapture(model, layer, stop=True) as capture:
        for size in sizes:
            scaled = F.interpolate(base, size=size, mode="bilinear", align_corners=False)
            detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
            img = (scaled + detail).clamp(0, 1)
            for _ in range(iterations):
                oy, ox = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=g))
                x = img.roll((oy, ox), dims=(2, 3)).requires_grad_(True)
                value = _objective(capture.run((x - m) / s), channel, neuron=False)
                (grad,) = torch.autograd.grad(value, x)
                grad = grad / (grad.abs().mean() + 1e-8)  # the same step size at every octave
                img = (x.detach() + step_size * grad).roll((-oy, -ox), dims=(2, 3)).clamp(0, 1)
                result.objective.append(value.item())
                done += 1
                if progress is not None:
                    progress(done, total)
            detail = img - scaled
            result.steps.append(img[0].detach().cpu())
    result.image = result.steps[-1]
    return result


def _fourier_frequencies(h: int, w: int) -> torch.Tensor:
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return torch.sqrt(fx * fx + fy * fy)  # (h, w // 2 + 1)


class _Parameterisation(nn.Module):
    """An image as trainable parameters: raw pixels, or a Fourier spectrum whose frequencies
    are scaled by 1/f (natural images' falloff) with colours decorrelated (lucid's recipe)."""

    def __init__(self, kind: str, channels: int, h: int, w: int, g: torch.Generator) -> None:
        super().__init__()
        self.kind, self.channels, self.h, self.w = kind, channels, h, w
        if kind == "pixel":
            self.pixels = nn.Parameter(0.1 * torch.randn(1, channels, h, w, generator=g))
        elif kind == "fourier":
            freqs = _fourier_frequencies(h, w)
            scale = 1.0 / torch.clamp(freqs, min=1.0 / max(h, w))
            self.register_buffer("scale", scale * math.sqrt(h * w) / scale.max() / 4)
            shape = (1, channels, h, w // 2 + 1, 2)
            self.spectrum = nn.Parameter(0.01 * torch.randn(*shape, generator=g))
        else:
            raise ValueError(f"parameterisation must be 'pixel' or 'fourier', got {kind!r}")

    def forward(self) -> torch.Tensor:
        if self.kind == "pixel":
            return torch.sigmoid(self.pixels)
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        x = torch.fft.irfft2(spectrum, s=(self.h, self.w), norm="ortho")  # (1, C, H, W)
        if self.channels == 3:  # decorrelated colour space -> RGB
            x = torch.einsum("bchw,dc->bdhw", x, _COLOUR.to(x.device))
        return torch.sigmoid(x)


def _robustness(x: torch.Tensor, g: torch.Generator, jitter: int) -> torch.Tensor:
    """Random pad + jitter, scale and rotation of a batch of images (transformation
    robustness): a pattern must survive small changes to count."""
    b, c, h, w = x.shape
    x = F.pad(x, (jitter, jitter, jitter, jitter), mode="constant", value=0.5)
    oy, ox = (int(v) for v in torch.randint(0, jitter + 1, (2,), generator=g))
    x = x[:, :, oy : oy + h + jitter, ox : ox + w + jitter]
    scale = float(torch.empty(1).uniform_(0.92, 1.08, generator=g))
    angle = math.radians(float(torch.empty(1).uniform_(-8, 8, generator=g)))
    theta = torch.tensor(
        [[math.cos(angle) / scale, -math.sin(angle) / scale, 0.0],
         [math.sin(angle) / scale, math.cos(angle) / scale, 0.0]],
        device=x.device, dtype=x.dtype,
    ).unsqueeze(0)  # fmt: skip
    grid = F.affine_grid(theta.expand(b, -1, -1), [b, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def activation_maximisation(
    model: nn.Module,
    layer: str,
    channel: int,
    mean: Sequence[float],
    std: Sequence[float],
    size: int = 224,
    channels: int = 3,
    steps: int = 256,
    lr: float = 0.05,
    parameterisation: str = "fourier",
    neuron: bool = False,
    robust: bool = True,
    seed: int = 0,
    snapshots: int = 6,
    progress: Progress | None = None,
    start: torch.Tensor | None = None,
) -> Visualisation:
    """An image that maximises one channel of `layer` (its mean, or with `neuron` its centre
    position), from noise or, with `start` ((C, H, W) in [0, 1]), from that image: "forward
    the image to the layer, then maximise the feature" (the Tsinghua DL HW2 visualisation).
    A start image is optimised pixel by pixel (its own spectrum is not a 1/f one).
    `channels`: 3 (RGB) or 1 (a grey image for 1-channel models)."""
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    if start is not None:
        channels, size = start.shape[0], start.shape[-1]
        parameterisation = "pixel"
    param = _Parameterisation(parameterisation, channels, size, size, g).to(device)
    if start is not None:
        with torch.no_grad():  # sigmoid(pixels) is the image to begin with
            param.pixels.copy_(torch.logit(start.float().clamp(1e-3, 1 - 1e-3))[None])
    m, s = _stats(mean, std, device)
    optimiser = torch.optim.Adam(param.parameters(), lr=lr)
    jitter = max(1, size // 28)
    keep = {round(k * steps / snapshots) for k in range(1, snapshots + 1)}
    result = Visualisation(image=torch.empty(0))
    with _Frozen(model), LayerCapture(model, layer, stop=True) as capture:
        for step in range(1, steps + 1):
            img = param()
            x = _robustness(img, g, jitter) if robust else img
            value = _objective(capture.run((x - m) / s), channel, neuron)
            optimiser.zero_grad(set_to_none=True)
            (-value).backward()
            optimiser.step()
            result.objective.append(value.item())
            if step in keep:
                result.steps.append(img[0].detach().cpu())
            if progress is not None:
                progress(step, steps)
    with torch.no_grad():
        result.image = param()[0].cpu()
    return result
