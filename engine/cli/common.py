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
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    parse_epoch_list,
)
from engine.config.registry import BACKBONES, CLASSIFIERS
from engine.experiments.kinds import KINDS, Flag
from engine.store.summary import summary_line


def config_from_flags(a: argparse.Namespace) -> RunConfig:
    if a.config:
        return RunConfig.load(a.config)
    if a.kind == "classify" and a.model in BACKBONES and a.model not in CLASSIFIERS:
        raise ConfigError(f"{a.model} is a pretrained backbone: add --kind transfer")
    cls = CONFIG_KINDS[a.kind]
    d = cls()  # the kind's defaults fill what the flags leave out

    def given(value, default):
        return default if value is None else value

    cfg = cls(
        name=a.name or "",
        data=DataConfig(
            name=given(a.dataset, d.data.name), path=a.data_path, val_path=a.val_path,
            augment=a.augment,
            colour_jitter=a.colour_jitter, rotate=a.rotate or 0.0,
            image_size=given(a.image_size, d.data.image_size), classes=a.classes or [],
            imbalance_ratio=given(a.imbalance_ratio, 1.0), class_counts=a.class_counts or [],
        ),
        loss=a.loss or "cross_entropy",
        model=ModelConfig(name=given(a.model, d.model.name),
                          cardinality=getattr(a, "cardinality", None) or 0,
                          group_width=getattr(a, "group_width", None) or 0,
                          no_max_pool=bool(getattr(a, "no_max_pool", False))),
        optim=OptimConfig(
            name=given(a.optimizer, d.optim.name), lr=given(a.lr, d.optim.lr),
            schedule=given(a.schedule, d.optim.schedule),
            milestones=given(a.milestones, d.optim.milestones),
            gamma=given(a.gamma, d.optim.gamma), step_size=given(a.step_size, d.optim.step_size),
            weight_decay=given(a.weight_decay, d.optim.weight_decay),
        ),
        epochs=given(a.epochs, d.epochs),
        batch_size=given(a.batch_size, d.batch_size),
        seed=a.seed,
        device=a.device,
        snapshot_every=given(getattr(a, "snapshot_every", None), d.snapshot_every),
        snapshot_epochs=getattr(a, "snapshot_epochs", None),
        snapshot_size=given(getattr(a, "snapshot_size", None), d.snapshot_size),
    )  # fmt: skip
    for kind in KINDS.values():  # each kind's own flags: set, or refused for another kind
        given = [f for f in kind.flags if _given(a, f)]
        if given and cfg.kind != kind.name:
            names = [f.shown for f in kind.flags]
            raise ConfigError(f"{', '.join(names[:-1])} and {names[-1]} need --kind {kind.name}")
        for f in given:
            setattr(cfg, f.field, f.switch if f.switch is not None else getattr(a, f.dest))
    return cfg.validate()


def _given(a: argparse.Namespace, flag: Flag) -> bool:
    """Whether `flag` was given (a command without the flag, as `compare`: not given)."""
    value = getattr(a, flag.dest, None)
    return value is True if flag.switch is not None else value is not None


def print_summary(summary: dict) -> None:
    print(summary_line(summary))


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
        "scenes), deepglobe (xxxx_sat.jpg / xxxx_mask.png folders), folder, prefixed, csv "
        "(train.csv / val.csv / test.csv of filename,label with train/ val/ test/ image folders "
        "beside them), cifar10, fashion_mnist / mnist / kmnist (IDX files; found without "
        "--data-path where `make data` puts them), unlabelled (ssl: a flat folder of images or "
        "a CSV list of file names)",
    )  # fmt: skip
    p.add_argument(
        "--data-path",
        default=None,
        help="folder of the dataset (not for digits or landcover; optional for the MNIST family)",
    )
    p.add_argument(
        "--val-path", default=None, metavar="FOLDER",
        help="folder and prefixed datasets: the validation images in their own folder of the "
        "same layout (train_50/ with val_50/) instead of a part carved from --data-path",
    )  # fmt: skip
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
    p.add_argument(
        "--rotate",
        type=float,
        default=None,
        metavar="DEGREES",
        help="with --augment: a random rotation within ± this many degrees too "
        "(DLCV HW1's model B: flip, rotation and crop)",
    )
    p.add_argument("--optimizer", default=None, choices=list(OPTIMIZERS))
    p.add_argument("--lr", type=float, default=None, help="learning rate (5e-3; transfer 1e-3)")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--schedule", default=None, choices=list(SCHEDULES),
                   help="cosine (default), multistep (--milestones, --gamma), step (--step-size, "
                   "--gamma: DLCV HW4's 40 epochs x 0.9) or none")  # fmt: skip
    p.add_argument(
        "--milestones",
        type=epoch_list,
        default=None,
        metavar="80,120,160",
        help="multistep: the epochs at which the rate is multiplied by --gamma",
    )
    p.add_argument(
        "--gamma",
        type=float,
        default=None,
        help="multistep / step: the factor (0.2; DLCV HW4: 0.9)",
    )
    p.add_argument(
        "--step-size",
        type=int,
        default=None,
        help="step: multiply the rate by --gamma every this many epochs (40)",
    )
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
    t.add_argument("--no-max-pool", action="store_true",
                   help="resnet50: no max-pool after the 3x3 stem (by default it stays, as DLCV "
                   "HW1 problem 1 writes)")  # fmt: skip
    for kind in KINDS.values():
        for f in kind.flags:
            if f.switch is not None:
                t.add_argument(f.option, action="store_true", help=f.help)
            elif f.both_ways:
                t.add_argument(f.option, action=argparse.BooleanOptionalAction, default=None,
                               help=f.help)  # fmt: skip
            else:
                t.add_argument(f.option, type=f.type, choices=f.choices, default=None,
                               metavar=f.metavar, help=f.help)  # fmt: skip
