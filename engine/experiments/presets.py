"""Comparison presets: which runs a comparison of each kind holds, each a copy of one base
config that differs only in what the comparison is about. Groups (engine.store.groups) make them."""

from __future__ import annotations

from dataclasses import replace

from engine.config import ConfigError, RunConfig, TransferConfig
from engine.experiments.kinds import KINDS
from engine.store.groups import LR_MARK

PRESETS = {
    "finetune-vs-frozen": "one backbone fine-tuned, frozen as a feature extractor, "
    "(optionally) trained from scratch, and the control: randomly initialised and frozen",
    "resnet34-vs-mobilenet": "the NTHU transfer-learning homework: ResNet-34 vs MobileNetV3-Large, each "
    "fine-tuned, frozen, and as the random-init frozen control",
    "a-e": "the DLCV self-supervised grid: settings A-E (no pretraining / supervised / "
    "self-supervised backbone, trained in full or frozen) and F, the random-init frozen control",
    "dynamic-vs-static": "ENGN8536 Lab 4: dynamic (generated) vs static 1x1 filters per class, "
    "and (optionally) dynamic with the backbone frozen",
    "response-scale": "ENGN8536 Lab 4: dynamic filters whose response is divided by sqrt(64) "
    "(the lab's reference) vs multiplied by it",
    "fcn32s-vs-improved": "DLCV HW1 problem 3: land-cover segmentation, FCN-32s on VGG-16 vs an "
    "improved model (default FCN-8s skips on EfficientNet-Lite0)",
    "fewshot-grid": "DLCV HW4 problem 1: prototypical networks, K = 1, 5, 10 shots x "
    "Euclidean, cosine and parametric distance, each trained and tested 5-way K-shot",
    "long-tail": "Tsinghua DL HW2 task C: one long-tailed training split, trained with "
    "cross-entropy, Balanced Softmax and class-weighted cross-entropy",
    "ablation": "Tsinghua DL HW2 task B: augmentation (crop, flip, colour jitter) on/off x "
    "MultiStepLR on/off x SGD vs Adam, 8 runs of one model",
}
# Every other preset: transfer.
PRESET_KINDS = {p: k.name for k in KINDS.values() for p in k.presets}  # preset -> kind
FEWSHOT_SHOTS, FEWSHOT_DISTANCES = (1, 5, 10), ("euclidean", "cosine", "parametric")
IMPROVED_DEFAULT = "fcn8s_lite0"
# A frozen row's head trains on features computed once (cheap): to convergence, early
# stopping on the validation loss, at most HEAD_EPOCH_CAP epochs; not the fine-tuning rows'
# epoch count, which would leave a linear head under-trained and the comparison unfair.
HEAD_EPOCH_CAP, HEAD_PATIENCE = 100, 5
# The ablation with `tune_lr`: each optimiser at each of its learning rates (SGD with momentum
# 0.9); the table then keeps, per combination, the rate with the best validation accuracy.
LR_GRID = {"sgd": (0.1, 0.03, 0.01), "adam": (3e-3, 1e-3, 3e-4)}
CONTROL = "random init, frozen (control)"
SSL_WAITING = (
    "waiting for a self-supervised (BYOL) backbone: pretrain one (train --kind ssl), then "
    "give its run (ssl weights) to fill this row"
)


def scaled_milestones(milestones: list[int], epochs: int, reference: int = 200) -> list[int]:
    """Milestones meant for `reference` epochs (the Tsinghua DL HW2: [80, 120, 160] of 200), at the same
    fractions of `epochs`: [5, 7, 10] of 12. Strictly increasing, within [1, epochs].
    Milestones that already fit the run (none past `epochs`) are kept as they are."""
    if milestones and max(milestones) <= epochs:
        return list(milestones)
    out: list[int] = []
    for m in milestones:
        step = min(max(1, round(m * epochs / reference)), epochs)
        if not out or step > out[-1]:
            out.append(step)
    return out


def preset_configs(
    preset: str,
    base: RunConfig,
    include_scratch: bool = True,
    ssl_weights: str | None = None,
    include_frozen: bool = True,
    supervised_weights: str = "imagenet",
    tune_lr: bool = False,
) -> list[tuple[str, RunConfig | None, str]]:
    """(label, config or None, note) per row. Every config shares `base`'s data, seed, epochs
    and optimiser: only what the comparison is about differs. A-E: `supervised_weights` (B, D)
    is "imagenet" or a weight file; `ssl_weights` (C, E) a BYOL weight file."""

    def row(label: str, **changes) -> tuple[str, TransferConfig, str]:
        if hasattr(base, "label"):  # (a plain classify config has none: its name says it)
            changes["label"] = label
        if changes.get("mode", getattr(base, "mode", None)) not in ("frozen", None):
            changes["batchnorm"] = "frozen"  # only a frozen backbone's statistics are a choice
        cfg = replace(base, **changes)
        if getattr(cfg, "features_once", False):
            # Features once, then the head to convergence; their embeddings never change
            # (the backbone is fixed), so one snapshot is all there is to see.
            cfg = replace(cfg, epochs=max(HEAD_EPOCH_CAP, base.epochs), patience=HEAD_PATIENCE,
                          snapshot_epochs=[1])  # fmt: skip
        return label, cfg, ""

    def control(backbone: str, prefix: str = "", **changes) -> tuple[str, TransferConfig, str]:
        """The same backbone, randomly initialised and frozen, with the same head budget: what
        a pretrained frozen row must beat for its pretraining to have helped."""
        return row(f"{prefix}{backbone}: {CONTROL}", mode="frozen", weights="none", **changes)

    expected = PRESET_KINDS.get(preset)
    if preset in PRESETS and base.kind != expected:
        raise ConfigError(f"preset {preset!r} compares {expected} runs, got a {base.kind} config")
    if preset == "dynamic-vs-static":
        rows = [row("dynamic filters", dynamic=True), row("static filters", dynamic=False)]
        if include_frozen:
            rows.append(row("dynamic filters, frozen backbone", dynamic=True, freeze_backbone=True))
        return rows
    if preset == "response-scale":
        return [row("dynamic filters, response / sqrt(64)", dynamic=True, response_scale="divide"),
                row("dynamic filters, response x sqrt(64)", dynamic=True,
                    response_scale="multiply")]  # fmt: skip
    if preset == "fewshot-grid":  # the assignment's tables: train and test under the same K
        return [
            row(
                f"{k}-shot · {d}", distance=d, train_way=base.test_way, train_shot=k, test_shots=[k]
            )  # fmt: skip
            for k in FEWSHOT_SHOTS
            for d in FEWSHOT_DISTANCES
        ]
    if tune_lr and preset != "ablation":
        raise ConfigError("tune_lr (--tune-lr) is for the 'ablation' preset")
    if preset == "ablation" and tune_lr:
        return [
            (f"{label}{LR_MARK}{lr:g}", replace(cfg, optim=replace(cfg.optim, lr=lr, momentum=0.9)),
             note)
            for label, cfg, note in preset_configs(preset, base)
            for lr in LR_GRID[cfg.optim.name]
        ]  # fmt: skip
    if preset == "ablation":
        milestones = scaled_milestones(base.optim.milestones, base.epochs)
        return [
            row(
                f"{'SGD' if opt == 'sgd' else 'Adam'} · {'augmented' if aug else 'no aug'} · "
                f"{'MultiStepLR' if steps else 'constant lr'}",
                data=replace(base.data, augment=aug, colour_jitter=aug),
                optim=replace(
                    base.optim,
                    name=opt,
                    schedule="multistep" if steps else "none",
                    milestones=milestones,
                ),
            )  # fmt: skip
            for opt in ("sgd", "adam")
            for aug in (False, True)
            for steps in (False, True)
        ]
    if preset == "long-tail":
        if base.data.imbalance_ratio == 1 and not base.data.class_counts:
            raise ConfigError(
                "preset 'long-tail' needs a long-tailed training split: give "
                "data.imbalance_ratio (e.g. 50) or data.class_counts"
            )
        return [
            row("cross-entropy", loss="cross_entropy"),
            row("Balanced Softmax", loss="balanced_softmax"),
            row("class-weighted cross-entropy", loss="weighted_cross_entropy"),
        ]
    if preset == "fcn32s-vs-improved":
        improved = base.model.name if base.model.name != "fcn32s" else IMPROVED_DEFAULT
        # COCO (VOC labels) weights are the improved model's; FCN-32s starts from VGG-16's.
        vgg = {"backbone_weights": "imagenet"} if base.backbone_weights == "coco_voc" else {}
        return [
            row("A: FCN-32s (VGG-16)", model=replace(base.model, name="fcn32s"), **vgg),
            row(f"B: {improved}", model=replace(base.model, name=improved)),
        ]
    backbone = base.model.name
    if preset == "finetune-vs-frozen":
        rows = [
            row(f"{backbone}: fine-tuned", mode="finetune", weights="imagenet"),
            row(f"{backbone}: frozen", mode="frozen", weights="imagenet"),
        ]
        if include_scratch:
            rows.append(row(f"{backbone}: from scratch", mode="scratch"))
        return [*rows, control(backbone)]
    if preset == "resnet34-vs-mobilenet":
        rows = []
        for name in ("resnet34", "mobilenet_v3_large"):
            model = replace(base.model, name=name)
            rows.append(
                row(f"{name}: fine-tuned", model=model, mode="finetune", weights="imagenet")
            )
            rows.append(row(f"{name}: frozen", model=model, mode="frozen", weights="imagenet"))
            rows.append(control(name, model=model))
        return rows
    if preset == "a-e":
        rows = [
            row("A: no pretraining", mode="scratch"),
            row("B: supervised, fine-tuned", mode="finetune", weights=supervised_weights),
            None,
            row("D: supervised, frozen", mode="frozen", weights=supervised_weights),
            None,
        ]
        for i, (label, mode) in ((2, ("C: self-supervised, fine-tuned", "finetune")),
                                 (4, ("E: self-supervised, frozen", "frozen"))):  # fmt: skip
            rows[i] = (
                row(label, mode=mode, weights=ssl_weights)
                if ssl_weights
                else (label, None, SSL_WAITING)
            )
        return [*rows, row(f"F: {CONTROL}", mode="frozen", weights="none")]
    raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
