"""Dynamic convolutional filters (ENGN8536 Lab 4; Jia et al., NeurIPS 2016).

An image goes through ResNet-18 up to `layer1` (features (B, 64, 8, 8) for 32x32 input).
Each class has a learned 128-d embedding; an MLP turns it into a 64-d filter, which is
L2-normalised and used as the weight of a 1x1 convolution 64 -> 1: the class's response
map (B, 1, 8, 8), divided by sqrt(64) (the lab's reference implementation, scaled-dot-
product style; `response_scale="multiply"` multiplies instead, as this workbench did
before). A shared MLP reads the flattened map and gives that
class's score; ten classes, ten scores, argmax. The per-class loop of the seed is done for
all classes at once (one einsum); `forward_loop` keeps the loop, as a reference.

The static baseline is the same network without the generator: an ordinary trainable
1x1 convolution 64 -> C (one output channel per class, with bias; not normalised, not
rescaled), whose class-k channel is class k's response map. (A single shared 64 -> 1
convolution, read literally, would give every class the same score.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.base import Classifier

EMBED_DIM, HIDDEN_DIM, FILTER_DIM = 128, 256, 64
SCALE = math.sqrt(FILTER_DIM)  # "for numerical stability, rescale by sqrt(64)"
RESPONSE_FACTORS = {"divide": 1 / SCALE, "multiply": SCALE}


def resnet18_to_layer1() -> nn.Sequential:
    """torchvision's ResNet-18 up to and including `layer1`, with its own module names."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)


class DynamicFilterNet(Classifier):
    def __init__(self, num_classes: int = 10, dynamic: bool = True,
                 response_scale: str = "divide") -> None:  # fmt: skip
        super().__init__()
        self.num_classes, self.dynamic = num_classes, dynamic
        self.factor = RESPONSE_FACTORS[response_scale]
        self.backbone = resnet18_to_layer1()  # (B, 3, 32, 32) -> (B, 64, 8, 8)
        if dynamic:
            self.class_embeddings = nn.Embedding(num_classes, EMBED_DIM)
            self.generator = nn.Sequential(
                nn.Linear(EMBED_DIM, HIDDEN_DIM), nn.ReLU(), nn.Linear(HIDDEN_DIM, FILTER_DIM),
                nn.Tanh(),
            )  # fmt: skip
        else:  # an ordinary trainable 1x1 convolution, one output channel per class
            self.static_conv = nn.Conv2d(FILTER_DIM, num_classes, kernel_size=1)
        self.score_predictor = nn.Sequential(
            nn.Linear(FILTER_DIM, FILTER_DIM), nn.ReLU(), nn.Linear(FILTER_DIM, 1)
        )
        self.num_features = num_classes * FILTER_DIM

    # --- the pieces ------------------------------------------------------------------------
    def filters(self) -> torch.Tensor:
        """(C, 64) per-class 1x1 filters: generated and L2-normalised (each row has norm 1),
        or the static convolution's weights as they are."""
        if self.dynamic:
            return F.normalize(self.generator(self.class_embeddings.weight), dim=1)
        return self.static_conv.weight.view(self.num_classes, FILTER_DIM)

    def response_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 8, 8): every class's response map (dynamic: rescaled by sqrt(64))."""
        feats = self.backbone(x)  # (B, 64, 8, 8)
        if not self.dynamic:
            return self.static_conv(feats)
        # A 1x1 convolution with each class's filter, all classes at once.
        return torch.einsum("bchw,kc->bkhw", feats, self.filters()) * self.factor

    # --- the Classifier split ---------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.response_maps(x).flatten(1)  # (B, C * 64): the embedding pages use it

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        maps = features.view(features.shape[0], self.num_classes, -1)  # (B, C, 64)
        return self.score_predictor(maps).squeeze(-1)  # (B, C) scores

    def forward_loop(self, x: torch.Tensor) -> torch.Tensor:
        """The assignment's loop, one class at a time: a reference for the vectorised forward."""
        feats = self.backbone(x)
        scores = []
        for k, w in enumerate(self.filters()):
            if self.dynamic:
                response = F.conv2d(feats, w.view(1, FILTER_DIM, 1, 1), stride=1, padding=0)
                response = response * self.factor
            else:
                bias = self.static_conv.bias[k : k + 1]
                response = F.conv2d(feats, w.view(1, FILTER_DIM, 1, 1), bias, stride=1)
            scores.append(self.score_predictor(response.flatten(1)))  # (B, 1)
        return torch.cat(scores, dim=1)

    # --- freezing ------------------------------------------------------------------------------
    def freeze_backbone(self) -> None:
        """The assignment's question: the backbone's weights (and BatchNorm statistics) stay fixed."""
        self.freeze(self.backbone)


def load_resnet18_layer1(model: DynamicFilterNet, state: dict[str, torch.Tensor]) -> int:
    """Put ImageNet ResNet-18 weights into the backbone; returns how many tensors loaded."""
    names = {"conv1": "0", "bn1": "1", "layer1": "4"}
    mapped = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in names:
            mapped[f"{names[head]}.{rest}"] = value
    model.backbone.load_state_dict(mapped, strict=True)
    return len(mapped)
