"""The runner every experiment kind shares: data, the kind's `prepare` (model, optimiser,
loaders), the Trainer with its snapshot hook, a resume, and the test of best.pt. A kind's
module only says what differs (its Prepared); `fit` does the rest, in steps.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.analysis.metrics import confusion_matrix
from engine.config import RunConfig
from engine.core.atomic import save_npy, save_npz, write_atomic
from engine.data import BatchLoader, ImageSet, Splits, load_dataset
from engine.experiments.kinds import check_processes
from engine.store.events import drop_events_after
from engine.store.layout import RunLayout
from engine.store.outcomes import Outcomes, write_outcomes
from engine.train import (
    CheckpointError,
    Classification,
    Episodic,
    EvalResult,
    EventLog,
    Segmentation,
    Trainer,
    TrainState,
    distributed,
    load_checkpoint,
    resolve_device,
)
from engine.train.trainer import EpochHook, eval_mode


def snapshot_subset(val: ImageSet, size: int, seed: int) -> ImageSet:
    """A fixed subset of the validation set: the same samples, in the same order, every epoch."""
    if len(val) <= size:
        return val
    pick = np.random.default_rng(seed).permutation(len(val))[:size]
    return val.subset(np.sort(pick))


class SnapshotWriter:
    """Epoch hook: embeddings of a fixed validation subset + the validation confusion matrix."""

    def __init__(self, layout: RunLayout, loader: BatchLoader, ids: torch.Tensor, epochs, classes):
        self.layout, self.loader, self.ids = layout, loader, ids.numpy()
        self.epochs, self.num_classes = set(epochs), classes

    @torch.inference_mode()
    def __call__(self, trainer: Trainer, epoch: int, val: EvalResult) -> None:
        if epoch not in self.epochs:
            return
        feats, preds, labels = [], [], []
        with eval_mode(trainer.model) as model:
            for x, y, _ in self.loader.batches():
                f = model.forward_features(x)
                feats.append(f.float().cpu())
                preds.append(model.forward_head(f).argmax(1).cpu())
                labels.append(y.cpu())
        save_npz(
            self.layout.embedding_file(epoch),
            features=torch.cat(feats).numpy().astype(np.float32),
            labels=torch.cat(labels).numpy().astype(np.int64),
            predictions=torch.cat(preds).numpy().astype(np.int64),
            sample_ids=self.ids.astype(np.int64),
        )
        cm = confusion_matrix(val.labels.numpy(), val.predictions.numpy(), self.num_classes)
        save_npy(self.layout.confusion_file(epoch), cm)


@dataclass
class Prepared:
    """What an experiment kind hands to `fit`: its model, optimiser, and how to make
    a loader of a split (images, or features computed once)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    loader: Callable[[ImageSet, bool, bool], BatchLoader]  # (data, shuffle, augment)
    extra_state: dict = field(default_factory=dict)  # saved in every checkpoint
    info: dict = field(default_factory=dict)  # shown beside the run: parameters, mode...
    task: Classification | Segmentation = field(default_factory=Classification)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
    eval_loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    # The epoch hook that writes snapshots: (layout, splits, snapshot epochs) -> hook;
    # None: embeddings of a validation subset and the confusion matrix.
    snapshots: Callable[[RunLayout, Splits, list[int]], EpochHook] | None = None
    # The final evaluation of best.pt: (trainer, splits, events) -> summary entries;
    # None: accuracy (and the task's metrics) on the test split.
    test: Callable[[Trainer, Splits, EventLog], dict] | None = None
    step_hooks: list[Callable[[TrainState], None]] = field(default_factory=list)
    checkpoint_seconds: float = 0.0  # Trainer.checkpoint_seconds: 0 writes every epoch
    # The class names that snapshots' labels index, when not the training split's (BYOL on
    # unlabelled images, monitored by kNN on another, labelled dataset).
    classes: list[str] | None = None


Prepare = Callable[[RunConfig, Splits, torch.device], Prepared]


def image_loaders(cfg: RunConfig, mean, std, device) -> Callable[..., BatchLoader]:
    def loader(data: ImageSet, shuffle: bool = False, augment: bool = False) -> BatchLoader:
        return BatchLoader(data, cfg.batch_size, mean, std, device, shuffle, augment, cfg.seed,
                           colour_jitter=cfg.data.colour_jitter,
                           rotate=cfg.data.rotate)  # fmt: skip

    return loader


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    return {
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
    }


def fit(
    cfg: RunConfig,
    run_dir: str | Path,
    prepare: Prepare,
    *,
    resume: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[TrainState], None] | None = None,
    on_data: Callable[[Splits, int], None] | None = None,
    on_model: Callable[[dict], None] | None = None,
    resume_from: str = "last.pt",
    load: Callable[[RunConfig], Splits] = lambda cfg: load_dataset(cfg.data),
) -> dict:
    """Train (or resume) the run of `cfg` in `run_dir` with what `prepare` makes; its summary.

    Under torchrun, every process runs this with the same arguments; rank 0 alone writes
    the run folder and reports (on_data, on_model; the others are given none)."""
    processes = distributed.World.from_env().size
    check_processes(cfg.kind, processes)
    distributed.check_batch_size(cfg.batch_size, processes)
    with distributed.process_group(resolve_device(cfg.device)) as device:
        layout = RunLayout(Path(run_dir))
        splits, p, trainer = _build(cfg, layout, prepare, device, load, on_data, on_model,
                                    should_stop, on_step)  # fmt: skip
        if resume:
            _resume(trainer, layout, resume_from)
        return _train_and_test(layout, splits, p, trainer, device)


def _build(cfg, layout, prepare, device, load, on_data, on_model, should_stop, on_step):
    """The data, the kind's Prepared and the Trainer with its snapshot hook."""
    if device.type == "cpu" and (cfg.cpu_threads or "OMP_NUM_THREADS" not in os.environ):
        torch.set_num_threads(cfg.resolved_cpu_threads())
    torch.manual_seed(cfg.seed)
    splits = load(cfg)
    p = prepare(cfg, splits, device)
    if cfg.loss != "cross_entropy":  # long-tailed data: the loss knows the class counts
        from engine.train.losses import classification_loss

        p.loss_fn = classification_loss(cfg.loss, splits.train_counts(), device)
        p.eval_loss_fn = F.cross_entropy  # validation and test: the same measure for every loss
    train_loader = p.loader(splits.train, True, cfg.data.augment)
    if distributed.world_size() > 1:  # this process's share of every batch
        train_loader.shard(distributed.rank(), distributed.world_size())
    if on_data is not None:  # steps: batches, or episodes for few-shot
        shown = splits if p.classes is None else replace(splits, classes=p.classes)
        on_data(shown, len(train_loader) * cfg.epochs)
    if on_model is not None:
        on_model(p.info)
    if p.snapshots is not None:
        snapshots = p.snapshots(layout, splits, cfg.snapshot_schedule())
    else:
        embed = snapshot_subset(splits.val, cfg.snapshot_size, cfg.seed)
        snapshots = SnapshotWriter(
            layout, p.loader(embed, False, False), embed.ids, cfg.snapshot_schedule(),
            splits.num_classes,
        )  # fmt: skip
    trainer = Trainer(
        model=p.model,
        optimizer=p.optimizer,
        scheduler=p.scheduler,
        train_loader=train_loader,
        val_loader=p.loader(splits.val, False, False),
        epochs=cfg.epochs,
        patience=cfg.patience,
        checkpoint_seconds=p.checkpoint_seconds,
        checkpoint_dir=layout.checkpoints,
        loss_fn=p.loss_fn,
        eval_loss_fn=p.eval_loss_fn,
        task=p.task,
        epoch_hooks=[snapshots],
        log_every=cfg.log_every,
        should_stop=should_stop,
        on_step=on_step,
        step_hooks=p.step_hooks,
        extra_state={"classes": splits.classes, **p.extra_state},
    )
    return splits, p, trainer


def _resume(trainer: Trainer, layout: RunLayout, resume_from: str) -> None:
    """Continue from checkpoint `resume_from` (checked whole before anything on disk changes);
    "" (a restart, asked for by name): from nothing, the history dropped."""
    main = distributed.is_main()
    # last.pt: where it stopped; best.pt: the best validation accuracy so far (ENGN8536 Lab 4);
    # "" (a restart, asked for by name): nothing, the history is dropped.
    start = layout.checkpoints / resume_from if resume_from else None
    if start is not None and start.exists():  # every process reads it (the same for any N)
        trainer.resume(start)  # checked whole before anything on disk changes
        if resume_from != "last.pt" and main:
            # From here on the run continues from best.pt: make it last.pt too, before the
            # history after it is dropped, so an interrupted resume resumes from the same place.
            write_atomic(layout.last_checkpoint, lambda f: f.write(start.read_bytes()))
    elif start is not None and resume_from != "last.pt":
        raise CheckpointError(f"cannot resume from {start}: it does not exist")
    elif main and not resume_from:  # a restart: no checkpoint of the old history stays
        layout.last_checkpoint.unlink(missing_ok=True)
        layout.best_checkpoint.unlink(missing_ok=True)
    # What was logged after that checkpoint is replayed now: keep it once, not twice;
    # snapshots of later epochs are rewritten when those epochs are trained again.
    if main:
        drop_events_after(layout.metrics, trainer.state.global_step, trainer.state.epoch)
        layout.drop_snapshots_after(trainer.state.epoch)


def _train_and_test(layout, splits, p, trainer, device) -> dict:
    """Train to the end (or a stop), then test best.pt: the summary."""
    main = distributed.is_main()
    # Opened after a resume's rewrite of the log: appends to it. Only rank 0 writes events.
    with EventLog(layout.metrics) if main else nullcontext() as events:
        trainer.events = events
        state = trainer.fit()
        summary = {
            "epochs_done": state.epoch,
            "early_stopped": state.converged,
            # What later estimates of this model's time here start from (engine.analysis).
            "seconds_per_epoch": statistics.median(trainer.epoch_seconds)
            if trainer.epoch_seconds
            else None,
            # A task whose score is a transform of its metric says how to undo it.
            f"best_val_{p.task.score_name}": getattr(p.task, "metric_of", float)(state.best_score),
            "classes": splits.classes,
            "data": splits.describe(),
            "device": str(device),
            "cpu_threads": torch.get_num_threads() if device.type == "cpu" else None,
            **p.info,
        }
        if isinstance(p.task, Classification) and not isinstance(p.task, Episodic):
            summary["train_counts"] = splits.train_counts()  # per class: the long-tail page
        if state.stopped or not main:  # the test is rank 0's alone
            return summary
        # Test accuracy of the best-validation checkpoint: the number a paper would report.
        best = load_checkpoint(layout.best_checkpoint, map_location=device)
        p.model.load_state_dict(best["model"])
        if p.test is not None:
            entries = p.test(trainer, splits, events)
            if (outcomes := entries.pop("outcomes", None)) is not None:
                write_outcomes(layout.root, outcomes)
            summary.update(entries)
            return summary
        test = trainer.evaluate(p.loader(splits.test, False, False))
        outcomes = test_outcomes(test, splits.test.ids.tolist())
        write_outcomes(layout.root, outcomes)
        summary["test_interval"] = test_interval(outcomes)
        events.emit("acc", test.acc, split="test", epoch=state.epoch, step=state.global_step)
        events.emit("loss", test.loss, split="test", epoch=state.epoch, step=state.global_step)
        for name, value in test.metrics.items():
            events.emit(name, value, split="test", epoch=state.epoch, step=state.global_step)
        summary.update(test_acc=test.acc, test_loss=test.loss)
        if len(test.labels):  # per class: what a long-tailed training split costs each class
            cm = confusion_matrix(test.labels.numpy(), test.predictions.numpy(), splits.num_classes)
            summary["test_confusion"] = cm.tolist()
        summary.update({f"test_{k}": v for k, v in test.metrics.items() if "/" not in k})
        if any("/" in k for k in test.metrics):  # per-class values, e.g. IoU per class
            summary["test_per_class"] = {k: v for k, v in test.metrics.items() if "/" in k}
    return summary


def test_interval(outcomes: Outcomes) -> dict | None:
    """The test score's 95% interval over the test items (Wilson for accuracy, a bootstrap
    over images for mIoU); None when there are too few items for one."""
    from engine.analysis.comparison import run_interval

    try:
        iv = run_interval(outcomes)
    except ValueError:
        return None
    return {"low": iv.low, "high": iv.high, "method": iv.method, "n": iv.n}


def test_outcomes(test: EvalResult, ids: list[int]) -> Outcomes:
    """Per test image: right or wrong (classification), or IoU counts (segmentation)."""
    if "tp" in test.per_item:
        rows = {k: test.per_item[k].tolist() for k in ("tp", "predicted", "actual")}
        return Outcomes("miou", ids=ids, **rows)
    return Outcomes("accuracy", ids=ids, correct=(test.predictions == test.labels).tolist())
