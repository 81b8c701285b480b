"""What a model costs: parameters, multiply-accumulates at an input size, and how many images
per second it trains on (forward + backward) on this machine."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn


def count_macs(model: nn.Module, image_size: int, channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass of one image, over the convolutions and linear
    layers (what dominates; BatchNorm, activations and pooling are left out, as is usual)."""
    total = 0

    def conv(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out[0].numel() * (m.in_channels // m.groups) * kh * kw  # per output element

    def linear(m: nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel() * m.in_features

    hooks = [
        m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total


def train_throughput(
    model: nn.Module, image_size: int, batch_size: int = 32, seconds: float = 2.0,
    num_classes: int = 10,
) -> float:  # fmt: skip
    """Images per second of forward + backward + SGD step on random data, after a warm-up."""
    x = torch.randn(batch_size, 3, image_size, image_size)
    y = torch.randint(0, num_classes, (batch_size,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # warm-up: allocations, kernels chosen
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or done == 0:
        step()
        done += batch_size
    return done / elapsed


@dataclass
class ModelCost:
    name: str
    params: int
    macs: int
    images_per_second: float | None


def model_costs(
    names: list[str], image_size: int = 32, num_classes: int = 10, seconds: float = 0.0
) -> list[ModelCost]:
    """One row per registry model; `seconds` > 0 also times training throughput."""
    from engine.models import build_model

    rows = []
    for name in names:
        torch.manual_seed(0)
        model = build_model(name, num_classes)
        speed = train_throughput(model, image_size, seconds=seconds) if seconds > 0 else None
        params = sum(p.numel() for p in model.parameters())
        rows.append(ModelCost(name, params, count_macs(model, image_size), speed))
    return rows
