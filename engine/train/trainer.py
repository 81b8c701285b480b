"""The one Trainer: every experiment kind trains through it, differing by model, loss and hooks."""

from __future__ import annotations

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

from engine.data.loader import BatchLoader
from engine.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from engine.train.events import EventLog
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

    def __post_init__(self) -> None:
        self.device = next(self.model.parameters()).device

    # --- the loop ----------------------------------------------------------------------
    def fit(self) -> TrainState:
        s = self.state
        while s.epoch < self.epochs:
            epoch = s.epoch + 1  # 1-based in events, files and the UI
            started = time.perf_counter()
            if not self._train_epoch(epoch):
                s.stopped = True
                self.save("last.pt")
                return s
            train_loss, train_acc = s.loss_sum / max(s.seen, 1), s.correct / max(s.seen, 1)
            val = self.evaluate(self.val_loader)
            if self.scheduler is not None:
                with warnings.catch_warnings():
                    # A run stopped after an epoch's last batch resumes straight into this
                    # step with no optimizer.step() in between: expected, and harmless.
                    warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`")
                    self.scheduler.step()
            s.epoch, s.step_in_epoch, s.loss_sum, s.correct, s.seen = epoch, 0, 0.0, 0, 0
            seconds = time.perf_counter() - started
            self._emit_epoch(epoch, train_loss, train_acc, val, seconds)
            for hook in self.epoch_hooks:
                hook(self, epoch, val)
            if val.score > s.best_score:
                s.best_score = val.score
                # best.pt first: a crash between the two writes must not leave it stale.
                self.save("best.pt")
            self.save("last.pt")
        return s

    def _train_epoch(self, epoch: int) -> bool:
        """Train from the saved position to the end of `epoch`; False when asked to stop."""
        s = self.state
        self.model.train()
        # Start from the sums of a mid-epoch stop: a resumed epoch adds in the same order.
        loss_sum = torch.tensor(s.loss_sum, device=self.device)
        correct = torch.tensor(s.correct, device=self.device, dtype=torch.long)
        seen = torch.tensor(s.seen, device=self.device, dtype=torch.long)
        for x, y, _ in self.train_loader.batches(epoch, start=s.step_in_epoch):
            logits = self.model(x)
            loss = self.loss_fn(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
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
            if (
                s.global_step % self.log_every == 0 or s.global_step == 1
            ):  # first: a live chart at once
                value = loss.item()
                if not math.isfinite(value):
                    raise NonFiniteLoss(
                        f"loss became {value} at epoch {epoch}, step {s.global_step}; "
                        "try a lower learning rate (the last good checkpoint is kept)"
                    )
                if self.events:
                    self.events.emit("loss", value, split="train", epoch=epoch, step=s.global_step)
            if self.on_step is not None:
                self.on_step(s)
            if self.should_stop():
                self._fold_sums(epoch, loss_sum, correct, seen)
                return False
        self._fold_sums(epoch, loss_sum, correct, seen)
        return True

    def _fold_sums(self, epoch: int, loss_sum, correct, seen) -> None:
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
            },
            "rng": rng_state(),
            "extra": self.extra_state,
        }

    def save(self, name: str) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        path = Path(self.checkpoint_dir) / name
        save_checkpoint(path, self.state_dict())
        return path

    def resume(self, path: str | Path) -> None:
        # On the CPU: the RNG states must stay CPU byte tensors; load_state_dict moves the rest.
        ckpt = load_checkpoint(path, map_location="cpu")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        p = ckpt["progress"]
        self.state = TrainState(
            epoch=p["epoch"],
            step_in_epoch=p["step_in_epoch"],
            global_step=p["global_step"],
            best_score=p.get("best_score", p.get("best_val_acc", -1.0)),  # older checkpoints
            loss_sum=p["loss_sum"],
            correct=p["correct"],
            seen=p["seen"],
        )
        set_rng_state(ckpt["rng"])


def build_optimizer(model: nn.Module, cfg, epochs: int, params: list | None = None):
    """SGD or Adam, with an optional MultiStepLR or cosine schedule stepped once per epoch.
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
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but no CUDA GPU is available here")
    return torch.device(name)
