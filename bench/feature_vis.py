"""Feature visualisation cost: DeepDream (3 octaves x 10 iterations) and 256-step activation
maximisation at 224x224 on EfficientNet-Lite0, against a reference measured in the same run:
one plain forward + input-gradient pass of the same model at 224x224.

The ratio says how many reference passes each visualisation costs: DeepDream's octaves are
smaller than 224 and stop the forward pass at the chosen layer, so it should cost fewer than
its 30 steps; activation maximisation adds the parameterisation and the random transforms.

    python bench/feature_vis.py [--layer _blocks.10] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from engine.analysis.dream import activation_maximisation, deep_dream
from engine.inspect.loading import load_imagenet_model


def reference_pass(model, x: torch.Tensor) -> float:
    """Seconds for one forward pass of the whole model and a gradient w.r.t. the input."""
    x = x.clone().requires_grad_(True)
    started = time.perf_counter()
    model(x).norm().backward()
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="_blocks.10")
    ap.add_argument("--channel", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="2: the machine's cores")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    lm = load_imagenet_model("efficientnet_lite0")
    model = lm.model.requires_grad_(False)
    image = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(0))
    x = ((image - torch.tensor(lm.mean).view(3, 1, 1)) / torch.tensor(lm.std).view(3, 1, 1))[None]
    reference_pass(model, x)  # warm-up
    ref = statistics.median(reference_pass(model, x) for _ in range(5))

    started = time.perf_counter()
    deep_dream(model, image, a.layer, lm.mean, lm.std, octaves=3, iterations=10)
    dream_s = time.perf_counter() - started
    started = time.perf_counter()
    activation_maximisation(model, a.layer, a.channel, lm.mean, lm.std, size=224, steps=256)
    amax_s = time.perf_counter() - started

    print(f"EfficientNet-Lite0, layer {a.layer}, {a.threads} threads")
    print(f"  reference: forward + input gradient at 224x224: {ref * 1000:.0f} ms")
    print(f"  DeepDream, 3 octaves x 10 iterations:           {dream_s:.1f} s "
          f"= {dream_s / ref:.1f} reference passes (30 steps)")  # fmt: skip
    print(f"  activation maximisation, 256 steps:             {amax_s:.1f} s "
          f"= {amax_s / ref:.1f} reference passes (256 steps)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
