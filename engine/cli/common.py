"""What the CLI's commands share: a run config from flags, and a run's summary in one line."""

from __future__ import annotations

import argparse

from engine.config import (
    CONFIG_KINDS,
    DATASETS,
    DEVICES,
    LOSSES,
    OPTIMIZERS,
    SCHEDULES,
    TRANSFER_MODES,
    ConfigError,
    DataConfig,
    DynamicFilterConfig,
    FewShotConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SegmentConfig,
    SSLConfig,
    TransferConfig,
    parse_epoch_list,
)
from engine.store.summary import summary_line


def config_from_flags(a: argparse.Namespace) -> RunConfig:
    if a.config:
        return RunConfig.load(a.config)
    if a.kind == "classify":
        if (a.mode, a.weights, a.backbone_lr_scale) != ("finetune", "imagenet", 1.0):
            raise ConfigError("--mode, --weights and --backbone-lr-scale need --kind transfer")
        from engine.models.backbones import BACKBONES

        if a.model in BACKBONES and a.model not in ("resnet18", "resnet34", "resnet50"):
            raise ConfigError(f"{a.model} is a pretrained backbone: add --kind transfer")
    cls = CONFIG_KINDS[a.kind]
    d = cls()  # the kind's defaults fill what the flags leave out

    def given(value, default):
        return default if value is None else value

    cfg = cls(
        name=a.name or "",
        data=DataConfig(
            name=given(a.dataset, d.data.name), path=a.data_path, augment=a.augment,
            colour_jitter=a.colour_jitter,
            image_size=given(a.image_size, d.data.image_size), classes=a.classes or [],
            imbalance_ratio=given(a.imbalance_ratio, 1.0), class_counts=a.class_counts or [],
        ),
        loss=a.loss or "cross_entropy",
        model=ModelConfig(name=given(a.model, d.model.name), cardinality=a.cardinality or 0,
                          group_width=a.group_width or 0),
        optim=OptimConfig(
            name=given(a.optimizer, d.optim.name), lr=given(a.lr, d.optim.lr),
            schedule=given(a.schedule, d.optim.schedule),
            weight_decay=given(a.weight_decay, d.optim.weight_decay),
        ),
        epochs=given(a.epochs, d.epochs),
        batch_size=given(a.batch_size, d.batch_size),
        seed=a.seed,
        device=a.device,
        snapshot_every=given(a.snapshot_every, d.snapshot_every),
        snapshot_epochs=a.snapshot_epochs,
    )  # fmt: skip
    if isinstance(cfg, TransferConfig):
        cfg.mode, cfg.weights = a.mode, a.weights
        cfg.backbone_lr_scale = a.backbone_lr_scale
    if isinstance(cfg, DynamicFilterConfig):
        cfg.dynamic, cfg.freeze_backbone = not a.static, a.freeze_backbone
    elif a.static or a.freeze_backbone:
        raise ConfigError("--static and --freeze-backbone need --kind dynamic_filter")
    segment_flags = (a.backbone_weights, a.fc_channels, a.fixed_upsampling, a.mask_images)
    if isinstance(cfg, SegmentConfig):
        cfg.backbone_weights = given(a.backbone_weights, cfg.backbone_weights)
        cfg.fc_channels = given(a.fc_channels, cfg.fc_channels)
        cfg.learn_upsampling = not a.fixed_upsampling
        cfg.mask_images = a.mask_images or []
    elif segment_flags != (None, None, False, None):
        raise ConfigError(
            "--backbone-weights, --fc-channels, --fixed-upsampling and --mask-images need "
            "--kind segment"
        )
    fewshot_flags = (a.distance, a.no_mlp_head, a.train_way, a.train_shot, a.test_shots,
                     a.test_episodes, a.episodes_per_epoch, a.episodes_csv, a.test_way)  # fmt: skip
    if isinstance(cfg, FewShotConfig):
        cfg.distance = given(a.distance, cfg.distance)
        cfg.mlp_head = not a.no_mlp_head
        cfg.train_way = given(a.train_way, cfg.train_way)
        cfg.train_shot = given(a.train_shot, cfg.train_shot)
        cfg.test_shots = given(a.test_shots, cfg.test_shots)
        cfg.test_episodes = given(a.test_episodes, cfg.test_episodes)
        cfg.episodes_per_epoch = given(a.episodes_per_epoch, cfg.episodes_per_epoch)
        cfg.episodes_csv = a.episodes_csv
        cfg.test_way = given(a.test_way, cfg.test_way)
    elif fewshot_flags != (None, False, None, None, None, None, None, None, None):
        raise ConfigError(
            "--distance, --no-mlp-head, --train-way, --train-shot, --test-shots, "
            "--test-way, --test-episodes, --episodes-per-epoch and --episodes-csv need "
            "--kind fewshot"
        )
    ssl_flags = (a.projection_dim, a.base_momentum, a.crop_scale_min, a.knn_k, a.flip)
    if isinstance(cfg, SSLConfig):
        cfg.projection_dim = given(a.projection_dim, cfg.projection_dim)
        cfg.base_momentum = given(a.base_momentum, cfg.base_momentum)
        cfg.crop_scale_min = given(a.crop_scale_min, cfg.crop_scale_min)
        cfg.knn_k = given(a.knn_k, cfg.knn_k)
        cfg.flip = a.flip
    elif ssl_flags != (None,) * 5:
        raise ConfigError(
            "--projection-dim, --base-momentum, --crop-scale-min, --knn-k and --[no-]flip "
            "need --kind ssl"
        )
    return cfg.validate()


def print_summary(summary: dict) -> None:
    print(summary_line(summary))


def shot_list(text: str) -> list[int]:
    """ "1,5,10" -> [1, 5, 10], for --test-shots."""
    try:
        return sorted({int(t) for t in text.replace(" ", "").split(",") if t})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"shots must be whole numbers like 1,5,10; got {text!r}"
        ) from None


def epoch_list(text: str) -> list[int] | None:
    try:
        return parse_epoch_list(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_data_and_optim_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `train` and `compare`; None = the experiment kind's default."""
    d = RunConfig()
    p.add_argument(
        "--dataset", default=None, choices=list(DATASETS),
        help="digits (classification default), landcover (segmentation default: synthetic "
        "scenes), deepglobe (xxxx_sat.jpg / xxxx_mask.png folders), folder, prefixed, cifar10",
    )  # fmt: skip
    p.add_argument(
        "--data-path", default=None, help="folder of the dataset (not for digits or landcover)"
    )
    p.add_argument(
        "--image-size", type=int, default=None, help="input size (32; transfer 64; segment 128)"
    )
    p.add_argument("--augment", action="store_true", help="random crop + flip per batch")
    p.add_argument("--colour-jitter", action="store_true",
                   help="with --augment: colour jitter too (brightness, contrast, saturation, "
                   "hue)")  # fmt: skip
    p.add_argument(
        "--imbalance-ratio", type=float, default=None, metavar="RHO",
        help="long-tailed training split: class j keeps n_max x RHO^(-j/(C-1)) images "
        "(e.g. 10, 50, 100); validation and test stay balanced",
    )  # fmt: skip
    p.add_argument(
        "--class-counts", type=lambda v: [int(c) for c in v.split(",") if c.strip()],
        default=None, metavar="120,60,30", help="long-tailed training split: images per class",
    )  # fmt: skip
    p.add_argument("--loss", default=None, choices=list(LOSSES),
                   help="classify/transfer: cross_entropy (default), balanced_softmax or "
                   "weighted_cross_entropy for long-tailed data")  # fmt: skip
    p.add_argument(
        "--classes", type=lambda v: [c.strip() for c in v.split(",") if c.strip()], default=None,
        metavar="0,1,2,3,4", help="only these classes of the dataset (e.g. pretrain on digits "
        "0-4, transfer to 5-9; the split is the full dataset's)",
    )  # fmt: skip
    p.add_argument("--optimizer", default=None, choices=list(OPTIMIZERS))
    p.add_argument("--lr", type=float, default=None, help="learning rate (5e-3; transfer 1e-3)")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--schedule", default=None, choices=list(SCHEDULES))
    p.add_argument("--epochs", type=int, default=None, help="epochs (12; transfer 5)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (32; segment 8)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, choices=list(DEVICES))


def add_kind_flags(t: argparse.ArgumentParser) -> None:
    """`train`'s flags that belong to one experiment kind each; `config_from_flags` reads
    them and refuses those given to another kind."""
    t.add_argument("--cardinality", type=int, default=None,
                   help="resnext18/resnext50: groups of the grouped convolutions (32)")  # fmt: skip
    t.add_argument("--group-width", type=int, default=None,
                   help="resnext18/resnext50: channels per group (4)")  # fmt: skip
    t.add_argument("--mode", default="finetune", choices=TRANSFER_MODES, help="transfer mode")
    t.add_argument(
        "--weights", default="imagenet",
        help="transfer: 'imagenet', or a weight file (a run's best.pt or a state dict)",
    )  # fmt: skip
    t.add_argument(
        "--backbone-lr-scale", type=float, default=1.0,
        help="transfer, finetune: the backbone's lr is --lr times this (e.g. 0.1)",
    )  # fmt: skip
    t.add_argument("--static", action="store_true",
                   help="dynamic_filter: trainable per-class filters instead of generated ones")  # fmt: skip
    t.add_argument("--freeze-backbone", action="store_true",
                   help="dynamic_filter: keep the ResNet-18 backbone's weights fixed")  # fmt: skip
    t.add_argument(
        "--backbone-weights", default=None, choices=["imagenet", "none"],
        help="segment: start the backbone from ImageNet (when cached) or random weights",
    )  # fmt: skip
    t.add_argument("--fc-channels", type=int, default=None,
                   help="segment, fcn32s: width of fc6/fc7 (4096 as VGG-16)")  # fmt: skip
    t.add_argument("--fixed-upsampling", action="store_true",
                   help="segment, fcn32s: keep the 32x bilinear upsampling fixed")  # fmt: skip
    t.add_argument(
        "--mask-images", type=lambda v: [s.strip() for s in v.split(",") if s.strip()],
        default=None, metavar="0013,0062,0104",
        help="segment: validation images whose predicted masks are kept every snapshot epoch "
        "(default: three spread over the validation set)",
    )  # fmt: skip
    t.add_argument("--distance", default=None, choices=["euclidean", "cosine", "parametric"],
                   help="fewshot: distance to the prototypes (euclidean)")  # fmt: skip
    t.add_argument("--no-mlp-head", action="store_true",
                   help="fewshot: embed with Conv-4 alone (1600-d), no 1600-800-800-400 MLP")  # fmt: skip
    t.add_argument(
        "--train-way", type=int, default=None, help="fewshot: N of training episodes (10)"
    )
    t.add_argument(
        "--train-shot", type=int, default=None, help="fewshot: K of training episodes (1)"
    )
    t.add_argument("--test-shots", type=shot_list, default=None, metavar="1,5,10",
                   help="fewshot: the K of the 5-way test episodes (1,5,10)")  # fmt: skip
    t.add_argument(
        "--test-episodes", type=int, default=None, help="fewshot: test episodes per K (600)"
    )
    t.add_argument("--test-way", type=int, default=None, help="fewshot: N of the test episodes (5)")
    t.add_argument("--episodes-csv", default=None, metavar="FILE",
                   help="fewshot: also test on this fixed episode file (with train.csv / "
                   "val.csv image lists)")  # fmt: skip
    t.add_argument("--episodes-per-epoch", type=int, default=None,
                   help="fewshot: training episodes per epoch (100)")  # fmt: skip
    t.add_argument("--projection-dim", type=int, default=None,
                   help="ssl: BYOL's projection size (256)")  # fmt: skip
    t.add_argument("--base-momentum", type=float, default=None,
                   help="ssl: the target's moving average at step 0, cosine to 1 (0.996)")  # fmt: skip
    t.add_argument(
        "--knn-k", type=int, default=None, help="ssl: neighbours of the kNN monitor (20)"
    )
    t.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="ssl: horizontal flips in the views (default: on, off for digits)")  # fmt: skip
    t.add_argument("--crop-scale-min", type=float, default=None,
                   help="ssl: random resized crops keep at least this share of the area "
                   "(default 0.08, 0.5 for digits)")  # fmt: skip
