"""The one Trainer: every experiment kind trains through it, differing by model, loss and hooks."""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.core.devices import device_problem
from engine.core.errors import first_line
from engine.data.loader import BatchLoader
from engine.store.events import EventLog
from engine.train import distributed
from engine.train.checkpoint import (
    CheckpointError,
    check_optimizer_fits,
    check_optimizer_values,
    check_scheduler_fits,
    check_training_checkpoint,
    load_checkpoint,
    load_into,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from engine.train.tasks import Classification, EvalResult

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0  # batches already done in the epoch in progress (mid-epoch stop)
    global_step: int = 0
    best_score: float = -1.0  # best validation score: accuracy, or mIoU for segmentation
    # Running sums of the epoch in progress, so a mid-epoch resume reports the same numbers.
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    stopped: bool = False
    # Early stopping (Trainer.patience): the best validation loss so far, the epochs since it
    # and whether training ended on it.
    best_loss: float | None = None
    since_best: int = 0
    converged: bool = False


EpochHook = Callable[["Trainer", int, EvalResult], None]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode inside the block, back in the mode it was in after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@dataclass
class Trainer:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    train_loader: BatchLoader
    val_loader: BatchLoader
    epochs: int
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    loss_fn: LossFn = F.cross_entropy
    # Validation and test loss; None: loss_fn. A long-tail training loss (Balanced Softmax)
    # is not the measure of balanced data: there it is plain cross-entropy, comparable
    # across the runs of a comparison.
    eval_loss_fn: LossFn | None = None
    task: Classification = field(default_factory=Classification)  # or tasks.Segmentation
    events: EventLog | None = None
    checkpoint_dir: Path | None = None
    epoch_hooks: list[EpochHook] = field(default_factory=list)
    log_every: int = 5
    should_stop: Callable[[], bool] = lambda: False
    on_step: Callable[[TrainState], None] | None = None
    # Called after every optimizer step, before anything is logged: e.g. BYOL's moving
    # average of the target network, which belongs to the step (and to its checkpoint).
    step_hooks: list[Callable[[TrainState], None]] = field(default_factory=list)
    extra_state: dict[str, Any] = field(default_factory=dict)  # saved in every checkpoint
    state: TrainState = field(default_factory=TrainState)
    # Stop when the validation loss has not improved (by 1e-4) for this many epochs; 0: off.
    # One process only: under DDP every epoch trains.
    patience: int = 0
    # Write checkpoints at most this often (seconds; the last epoch, a stop and convergence
    # always write). 0: every epoch. For epochs that cost milliseconds (a head on features
    # computed once) next to a checkpoint of the whole frozen backbone: a kill -9 then loses
    # at most this much training; best.pt is kept in memory until last.pt is written.
    checkpoint_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.device = next(self.model.parameters()).device
        self._pending_best: dict[str, Any] | None = None
        self.epoch_seconds: list[float] = []  # this process's epochs, for the summary
        self._last_write = time.monotonic()
        self._forward = self.model  # what a training step calls: DDP's wrapper, see fit()

    # --- the loop ----------------------------------------------------------------------
    def fit(self) -> TrainState:
        s = self.state
        # Wrapped here, after a resume loaded the checkpoint; DDP starts every process from
        # rank 0's weights. self.model stays the bare module for everything else.
        self._forward = distributed.wrap(self.model)
        main = distributed.is_main()
        while s.epoch < self.epochs and not s.converged:
            epoch = s.epoch + 1  # 1-based in events, files and the UI
            started = time.perf_counter()
            if not self._train_epoch(epoch):
                s.stopped = True
                self._write_checkpoints()
                return s
            train_loss, train_acc = s.loss_sum / max(s.seen, 1), s.correct / max(s.seen, 1)
            # Several processes: rank 0 alone validates, over the whole set in one process's
            # order, while the others wait at the barrier below. The numbers, the confusion
            # matrix and the snapshots are then those of a 1-process run (no predictions to
            # gather, no padded duplicates as DistributedSampler adds); the price is that
            # validation does not get faster with more processes.
            val = self.evaluate(self.val_loader) if main else None
            if self.scheduler is not None:
                with warnings.catch_warnings():
                    # A run stopped after an epoch's last batch resumes straight into this
                    # step with no optimizer.step() in between: expected, and harmless.
                    warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`")
                    self.scheduler.step()
            s.epoch, s.step_in_epoch, s.loss_sum, s.correct, s.seen = epoch, 0, 0.0, 0, 0
            seconds = time.perf_counter() - started
            self.epoch_seconds.append(seconds)
            if main:
                self._end_epoch(epoch, train_loss, train_acc, val, seconds)
            distributed.barrier()
        return s

    def _early_stop(self, val: EvalResult) -> None:
        """Count the epochs since the validation loss last improved; converged at `patience`."""
        s = self.state
        if not self.patience or distributed.world_size() > 1:
            return
        if not math.isfinite(val.loss):  # never the best (nor storable in a checkpoint)
            s.since_best += 1
        elif s.best_loss is None or val.loss < s.best_loss - 1e-4:
            s.best_loss, s.since_best = val.loss, 0
        else:
            s.since_best += 1
        s.converged = s.since_best >= self.patience and s.epoch < self.epochs

    def _end_epoch(self, epoch, train_loss, train_acc, val: EvalResult, seconds) -> None:
        """Events, snapshots and checkpoints of a finished epoch (rank 0's work)."""
        s = self.state
        self._emit_epoch(epoch, train_loss, train_acc, val, seconds)
        for hook in self.epoch_hooks:
            hook(self, epoch, val)
        self._early_stop(val)
        if s.converged and self.events is not None:
            self.events.emit("early_stop", float(epoch), split="train", epoch=epoch,
                             step=s.global_step)  # fmt: skip
        if val.score > s.best_score:
            s.best_score = val.score
            if self.checkpoint_seconds:  # written with the next last.pt
                self._pending_best = copy.deepcopy(self.state_dict())
            else:
                # best.pt first: a crash between the two writes must not leave it stale.
                self.save("best.pt")
        due = time.monotonic() - self._last_write >= self.checkpoint_seconds
        if due or s.converged or epoch >= self.epochs:
            self._write_checkpoints()

    def _write_checkpoints(self) -> None:
        """best.pt (when a better one waits in memory), then last.pt."""
        if self._pending_best is not None and self.checkpoint_dir is not None:
            if distributed.is_main():
                save_checkpoint(Path(self.checkpoint_dir) / "best.pt", self._pending_best)
            self._pending_best = None
        self.save("last.pt")
        self._last_write = time.monotonic()

    def _train_epoch(self, epoch: int) -> bool:
        """Train from the saved position to the end of `epoch`; False when asked to stop."""
        s, loader, world = self.state, self.train_loader, distributed.world_size()
        self._forward.train()
        # Start from the sums of a mid-epoch stop: a resumed epoch adds in the same order.
        # They are all processes' sums (see _fold_sums): rank 0 carries them on.
        carried = distributed.is_main()
        loss_sum = torch.tensor(s.loss_sum if carried else 0.0, device=self.device)
        correct = torch.tensor(s.correct if carried else 0, device=self.device, dtype=torch.long)
        seen = torch.tensor(s.seen if carried else 0, device=self.device, dtype=torch.long)
        asked_to_stop = False
        for x, y, _ in loader.batches(epoch, start=s.step_in_epoch):
            logits = self._forward(x)
            loss = self.loss_fn(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            if world == 1:
                loss.backward()
            else:
                # DDP averages the processes' gradients. Each mean loss weighted by its share
                # of the batch times the processes makes that average the gradient of the
                # whole batch's mean loss, also when the shares differ (the last batch).
                share = len(y) / loader.batch_length(s.step_in_epoch)
                (loss * (share * world)).backward()
            self.optimizer.step()
            s.step_in_epoch += 1
            s.global_step += 1
            for hook in self.step_hooks:
                hook(s)
            # Sums stay on the device: no host sync per step (it would stall a GPU).
            right, counted = self.task.counts(logits, y)  # images, or labelled pixels
            loss_sum += loss.detach() * counted
            correct += right
            seen += counted
            # The first step too: a live chart at once.
            logged = s.global_step % self.log_every == 0 or s.global_step == 1
            if world > 1:
                # The processes agree at logged steps (not every step: a host sync per step
                # would stall a GPU) and at the epoch's end, on the whole batch's loss and on
                # stopping: all see the same NaN, and all stop at the same step.
                asked_to_stop = asked_to_stop or self.should_stop()
                agreed = logged or s.step_in_epoch == len(loader)
                value, stop = (
                    self._agree(loss.detach() * share, asked_to_stop) if agreed else (None, False)
                )
            else:
                value = loss.item() if logged else None
            if logged:
                if not math.isfinite(value):
                    raise NonFiniteLoss(
                        f"loss became {value} at epoch {epoch}, step {s.global_step}; "
                        "try a lower learning rate (the last good checkpoint is kept)"
                    )
                if self.events:
                    self.events.emit("loss", value, split="train", epoch=epoch, step=s.global_step)
            if self.on_step is not None:
                self.on_step(s)
            if world == 1:
                stop = self.should_stop()  # after on_step, which it may depend on
            if stop:
                self._fold_sums(epoch, loss_sum, correct, seen)
                return False
        self._fold_sums(epoch, loss_sum, correct, seen)
        return True

    def _agree(self, batch_loss: torch.Tensor, stop: bool) -> tuple[float, bool]:
        """(the whole batch's loss, whether any process stops), the same in every process;
        `batch_loss` is this process's mean loss times its share of the batch."""
        flag = torch.tensor(float(stop), dtype=torch.float64, device=self.device)
        value, stops = distributed.all_reduce_sum(torch.stack([batch_loss.double(), flag])).tolist()
        return value, stops > 0

    def _fold_sums(self, epoch: int, loss_sum, correct, seen) -> None:
        if distributed.world_size() > 1:  # the sums of all processes, the same in each
            sums = torch.stack([loss_sum.double(), correct.double(), seen.double()])
            loss_sum, correct, seen = distributed.all_reduce_sum(sums)
        self.state.loss_sum = loss_sum.item()
        self.state.correct = int(correct.item())
        self.state.seen = int(seen.item())
        if not math.isfinite(self.state.loss_sum):
            # A non-finite loss between two logged steps: raise before last.pt is overwritten.
            raise NonFiniteLoss(
                f"loss became {self.state.loss_sum} during epoch {epoch}; "
                "try a lower learning rate (the last good checkpoint is kept)"
            )

    @torch.inference_mode()
    def evaluate(self, loader: BatchLoader) -> EvalResult:
        tally = self.task.tally(self.device)
        with eval_mode(self.model):
            for x, y, _ in loader.batches():
                logits = self.model(x)
                tally.add(logits, y, (self.eval_loss_fn or self.loss_fn)(logits, y))
        return tally.result()

    def _emit_epoch(self, epoch, train_loss, train_acc, val: EvalResult, seconds) -> None:
        if not self.events:
            return
        step = self.state.global_step
        emit = self.events.emit
        emit("loss", train_loss, split="train_epoch", epoch=epoch, step=step)
        if getattr(self.task, "train_accuracy", True):  # self-supervised: no labels to count
            emit("acc", train_acc, split="train", epoch=epoch, step=step)
        emit("loss", val.loss, split="val", epoch=epoch, step=step)
        if not math.isnan(val.acc):  # NaN: nothing to count (BYOL without labelled images)
            emit("acc", val.acc, split="val", epoch=epoch, step=step)
        for name, value in val.metrics.items():
            emit(name, value, split="val", epoch=epoch, step=step)
        emit("lr", self.optimizer.param_groups[0]["lr"], split="train", epoch=epoch, step=step)
        emit("epoch_seconds", seconds, split="train", epoch=epoch, step=step)

    # --- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        s = self.state
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "progress": {
                "epoch": s.epoch,
                "step_in_epoch": s.step_in_epoch,
                "global_step": s.global_step,
                "best_score": s.best_score,
                "loss_sum": s.loss_sum,
                "correct": s.correct,
                "seen": s.seen,
                "best_loss": s.best_loss,
                "since_best": s.since_best,
                "converged": s.converged,
            },
            "rng": rng_state(),
            "extra": self.extra_state,
        }

    def save(self, name: str) -> Path | None:
        if self.checkpoint_dir is None or not distributed.is_main():
            return None
        path = Path(self.checkpoint_dir) / name
        save_checkpoint(path, self.state_dict())
        return path

    def resume(self, path: str | Path) -> None:
        """Continue from checkpoint `path`: checked whole (check_training_checkpoint) and
        fitted to the model before this trainer changes; CheckpointError naming the file."""
        path = Path(path)
        # On the CPU: the RNG states must stay CPU byte tensors; load_state_dict moves the rest.
        ckpt = load_checkpoint(path, map_location="cpu")
        check_training_checkpoint(ckpt, path, self.epochs)
        load_into(self.model, ckpt["model"], path)
        fresh_groups = [dict(g) for g in self.optimizer.state_dict()["param_groups"]]
        saved_schedule = ckpt.get("scheduler")
        try:
            if self.scheduler is not None and saved_schedule is not None:
                check_scheduler_fits(self.scheduler.state_dict(), saved_schedule, path)
            check_optimizer_values(ckpt["optimizer"], path)
            self.optimizer.load_state_dict(ckpt["optimizer"])
            check_optimizer_fits(self.optimizer, fresh_groups, path)
            if self.scheduler is not None and saved_schedule is not None:
                self.scheduler.load_state_dict(saved_schedule)
        except CheckpointError:
            raise
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise CheckpointError(
                f"checkpoint {path}: its optimizer state does not fit this run: {first_line(e)}"
            ) from None
        p = ckpt["progress"]
        self.state = TrainState(
            epoch=p["epoch"],
            step_in_epoch=p["step_in_epoch"],
            global_step=p["global_step"],
            best_score=p.get("best_score", p.get("best_val_acc", -1.0)),  # older checkpoints
            loss_sum=p["loss_sum"],
            correct=p["correct"],
            seen=p["seen"],
            best_loss=p.get("best_loss"),  # older checkpoints: no early stopping state
            since_best=p.get("since_best", 0),
            converged=p.get("converged", False),
        )
        set_rng_state(ckpt["rng"])


def build_optimizer(model: nn.Module, cfg, epochs: int, params: list | None = None):
    """SGD or Adam, with an optional MultiStepLR, StepLR or cosine schedule stepped once per
    epoch.
    `params`: parameter groups (e.g. a lower lr for a backbone); default all trainable ones."""
    params = params or [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        opt = torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.schedule == "multistep":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, cfg.milestones, gamma=cfg.gamma)
    elif cfg.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, cfg.step_size, gamma=cfg.gamma)
    elif cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    else:
        sched = None
    return opt, sched


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    problem = device_problem(name)
    if problem:
        raise RuntimeError(problem)
    return torch.device(name)
