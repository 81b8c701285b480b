"""BYOL self-supervised pretraining (DLCV HW1 and HW4, problem 2) on the common path.

Training: two augmented views per image, BYOL's loss, the target network's moving average
after every step (a step hook: it is part of the step and of the checkpoint). Evaluation
each epoch: the loss on fixed views of the validation images, the collapse monitor and the
kNN accuracy of the online backbone's features, which best.pt is chosen by. Snapshots: those
features, in the Embeddings page's format (predictions: the kNN labels). At the end, the
test-split kNN accuracy of best.pt and of the last epoch, and `checkpoints/backbone.pt`:
the last epoch's online backbone alone (no label chose it).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from engine.analysis.metrics import confusion_matrix
from engine.config import SSLConfig
from engine.core.atomic import save_npy, save_npz
from engine.data import BatchLoader, ImageSet, Splits, load_dataset
from engine.experiments.fit import Prepared, fit, parameter_counts, snapshot_subset
from engine.models.backbones import build_transfer_net, get_backbone
from engine.ssl import (
    BYOL,
    SelfSupervised,
    TwoViewLoader,
    ViewAugment,
    byol_loss,
    knn_probe,
    target_momentum,
)
from engine.store.events import EventLog
from engine.store.layout import RunLayout
from engine.store.outcomes import Outcomes
from engine.train import Trainer, build_optimizer, load_checkpoint
from engine.train.checkpoint import save_checkpoint
from engine.train.tasks import EvalResult

BACKBONE_FILE = "backbone.pt"


def view_augmentations(cfg: SSLConfig) -> tuple[ViewAugment, ViewAugment]:
    """View a (always blurred) and view b (rarely), with the run's crops and flips."""
    if cfg.crop_scale_min is None or cfg.flip is None:
        cfg = replace(cfg)  # a config not yet made into a run: settle its defaults
        cfg.resolve_for_run()
    scale, flip_p = (cfg.crop_scale_min, 1.0), 0.5 if cfg.flip else 0.0
    return tuple(ViewAugment(crop_scale=scale, flip_p=flip_p, blur_p=p) for p in (1.0, 0.1))


def build_byol(cfg: SSLConfig, image_size: int) -> BYOL:
    """A randomly initialised backbone (the transfer model's `body`) inside BYOL."""
    net, _ = build_transfer_net(cfg.model.name, 2, image_size, "none")
    return BYOL(net.body, net.num_features, cfg.hidden_dim, cfg.projection_dim)


class FeatureSnapshots:
    """Epoch hook: the kNN probe of this epoch's evaluation, saved as an embedding snapshot
    (features, labels, kNN predictions) with its confusion matrix."""

    def __init__(self, layout: RunLayout, task: SelfSupervised, ids: torch.Tensor, epochs, classes):
        self.layout, self.task, self.ids = layout, task, ids.numpy()
        self.epochs, self.num_classes = set(epochs), classes

    def __call__(self, trainer: Trainer, epoch: int, val: EvalResult) -> None:
        if epoch not in self.epochs or self.task.last_probe is None:
            return
        probe = self.task.last_probe
        labels, preds = probe.labels.numpy(), probe.predictions.numpy()
        save_npz(
            self.layout.embedding_file(epoch), features=probe.features.numpy().astype(np.float32),
            labels=labels.astype(np.int64), predictions=preds.astype(np.int64),
            sample_ids=self.ids.astype(np.int64),
        )  # fmt: skip
        save_npy(
            self.layout.confusion_file(epoch), confusion_matrix(labels, preds, self.num_classes)
        )


def versus_random_init(probe, random_probe) -> dict:
    """The pretrained backbone's test kNN accuracy against the random-init one's, on the same
    test images: both with Wilson intervals, and the exact McNemar test between them."""
    from engine.analysis import stats

    a = (probe.predictions == probe.labels).numpy()
    b = (random_probe.predictions == random_probe.labels).numpy()
    test = stats.mcnemar(a, b)
    ci, rci = stats.wilson(int(a.sum()), len(a)), stats.wilson(int(b.sum()), len(b))
    return {"ci95": [ci.low, ci.high], "random_init_ci95": [rci.low, rci.high],
            "difference": test.difference, "p": test.p, "detail": test.detail,
            "verdict": "differs" if test.differs else "within noise"}  # fmt: skip


def _probe(model, bank_loader, query_loader, labelled: Splits, cfg: SSLConfig):
    return knn_probe(model, bank_loader, query_loader, labelled.num_classes, cfg.knn_k,
                     cfg.knn_temperature)  # fmt: skip


KNN_OFF = ("kNN monitor off: the training images have no labels; give a labelled dataset "
           "(--knn-data, --knn-data-path) to watch kNN accuracy")  # fmt: skip


def knn_splits(cfg: SSLConfig, splits: Splits) -> Splits | None:
    """The labelled images of the kNN monitor: the training data's own, another dataset's
    (knn_data), or None (unlabelled images and no knn_data: the monitor is off)."""
    source = cfg.knn_source()
    if source is None:
        return None
    return splits if source is cfg.data else load_dataset(source)


def prepare(cfg: SSLConfig, splits: Splits, device: torch.device) -> Prepared:
    spec = get_backbone(cfg.model.name)
    mean, std = list(spec.mean), list(spec.std)  # as the transfer runs that will use it
    model = build_byol(cfg, splits.image_size).to(device)
    optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.epochs)
    views = view_augmentations(cfg)

    def loader(data: ImageSet, shuffle: bool = False, augment: bool = False) -> TwoViewLoader:
        return TwoViewLoader(data, cfg.batch_size, mean, std, device, shuffle, False, cfg.seed,
                             views=views)  # fmt: skip

    def plain(data: ImageSet) -> BatchLoader:
        return BatchLoader(data, 4 * cfg.batch_size, mean, std, device)

    total_steps = len(loader(splits.train)) * cfg.epochs

    def momentum_step(state) -> None:
        model.update_target(target_momentum(state.global_step, total_steps, cfg.base_momentum))

    labelled = knn_splits(cfg, splits)
    info = {
        "backbone": spec.name, "method": "byol", "label": cfg.label,
        "input_size": splits.image_size, "projection_dim": cfg.projection_dim,
        "online_params": sum(p.numel() for p in model.online_parameters()),
        **parameter_counts(model),
    }  # fmt: skip
    common = dict(extra_state={"mean": mean, "std": std}, loss_fn=byol_loss,
                  step_hooks=[momentum_step])  # fmt: skip
    if labelled is None:
        print(KNN_OFF, flush=True)
        task = SelfSupervised(model, None, None, 0)

        def test_unmonitored(trainer: Trainer, splits: Splits, events: EventLog) -> dict:
            model.load_state_dict(load_checkpoint(trainer.checkpoint_dir / "last.pt")["model"])
            path = Path(trainer.checkpoint_dir) / BACKBONE_FILE
            save_checkpoint(path, model.body.state_dict())
            return {"backbone_file": str(path), "knn": KNN_OFF}

        return Prepared(model, optimizer, scheduler, loader, info={**info, "knn": KNN_OFF},
                        task=task, test=test_unmonitored,
                        snapshots=lambda layout, splits, epochs: lambda *_: None,
                        **common)  # fmt: skip

    bank = snapshot_subset(labelled.train, cfg.knn_bank_size, cfg.seed)
    query = snapshot_subset(labelled.val, cfg.snapshot_size, cfg.seed)
    task = SelfSupervised(model, plain(bank), plain(query), labelled.num_classes, cfg.knn_k,
                          cfg.knn_temperature)  # fmt: skip

    # The baseline every epoch is measured against: the same backbone, randomly initialised
    # (the seed makes it the same on a resume, which prepares before loading last.pt).
    random_init = task.probe().accuracy
    task.last_probe = None
    random_probe = _probe(model, task.bank_loader, plain(labelled.test), labelled, cfg)
    random_init_test = random_probe.accuracy
    print(f"kNN accuracy of the randomly initialised backbone: {random_init:.2%} (validation), "
          f"{random_init_test:.2%} (test)", flush=True)  # fmt: skip

    def snapshots(layout: RunLayout, splits: Splits, epochs: list[int]) -> FeatureSnapshots:
        return FeatureSnapshots(layout, task, query.ids, epochs, labelled.num_classes)

    def test(trainer: Trainer, splits: Splits, events: EventLog) -> dict:
        # best.pt (chosen by a label-based kNN) is loaded; what transfers is the last epoch's
        # backbone, which no label chose: BYOL's "without labels" holds for rows C and E.
        best = _probe(model, task.bank_loader, plain(labelled.test), labelled, cfg)
        model.load_state_dict(load_checkpoint(trainer.checkpoint_dir / "last.pt")["model"])
        probe = _probe(model, task.bank_loader, plain(labelled.test), labelled, cfg)
        step, epoch = trainer.state.global_step, trainer.state.epoch
        events.emit("knn_acc", probe.accuracy, split="test", epoch=epoch, step=step)
        events.emit("acc", probe.accuracy, split="test", epoch=epoch, step=step)
        path = Path(trainer.checkpoint_dir) / BACKBONE_FILE
        save_checkpoint(path, model.body.state_dict())  # the last online backbone, plain
        correct = (probe.predictions == probe.labels).tolist()
        return {"test_acc": probe.accuracy, "test_knn_acc": probe.accuracy,
                "test_knn_acc_best": best.accuracy, "backbone_file": str(path),
                "test_knn_vs_random_init": versus_random_init(probe, random_probe),
                "outcomes": Outcomes("accuracy", ids=labelled.test.ids.tolist(),
                                     correct=[int(c) for c in correct])}  # fmt: skip

    if labelled is not splits:
        info["knn_data"] = labelled.describe()
    info.update(knn_acc_random_init=random_init, test_knn_acc_random_init=random_init_test)
    return Prepared(
        model, optimizer, scheduler, loader, info=info, task=task, snapshots=snapshots,
        test=test, classes=None if labelled is splits else labelled.classes, **common,
    )  # fmt: skip


def run(cfg: SSLConfig, run_dir: str | Path, **kw) -> dict:
    return fit(cfg, run_dir, prepare, **kw)


def check_data(cfg: SSLConfig) -> None:
    """The training images and, when it is another dataset, the kNN monitor's, each checked
    whole before the run folder is made."""
    from engine.data import check_source

    for d in (cfg.data, cfg.knn_source()):
        if d is not None:
            check_source(d.name, d.path, d.classes, d.class_counts, d.val_path)
