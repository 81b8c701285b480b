"""Trainer overhead: throughput of the workbench's Trainer / a bare hand-written loop.

Both train the same model on the same preloaded tensors with the same batch order, and both
evaluate on the validation set once per epoch (a loop that never validates is not one anyone
runs). The Trainer also does its real bookkeeping: events to metrics.jsonl, last.pt and best.pt
written atomically each epoch. The two are interleaved and repeated; the ratio of medians is
printed (machines are noisy, so only a ratio measured in one run means anything).

    python bench/trainer_overhead.py [--epochs 4] [--repeats 5] [--model small_cnn]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.config import DataConfig, RunConfig
from engine.data import BatchLoader, load_dataset
from engine.models import build_model
from engine.train import EventLog, Trainer


def make(model_name: str, splits, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(model_name, splits.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    return model, opt


def bare_loop(model, opt, train: BatchLoader, val: BatchLoader, epochs: int) -> float:
    """The loop one writes by hand: forward, backward, step; a validation pass per epoch."""
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = train.order(epoch)
        for b in range(len(train)):
            idx = order[b * train.batch_size : (b + 1) * train.batch_size]
            x, y = train.normalise(train.images[idx]), train.labels[idx]
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            correct = 0
            for b in range(len(val)):
                sl = slice(b * val.batch_size, (b + 1) * val.batch_size)
                x, y = val.normalise(val.images[sl]), val.labels[sl]
                correct += (model(x).argmax(1) == y).sum().item()
    return time.perf_counter() - start


def trainer_loop(model, opt, train: BatchLoader, val: BatchLoader, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp, EventLog(Path(tmp) / "metrics.jsonl") as events:
        trainer = Trainer(
            model=model, optimizer=opt, train_loader=train, val_loader=val, epochs=epochs,
            events=events, checkpoint_dir=Path(tmp) / "checkpoints",
        )  # fmt: skip
        start = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="0: as a run would (cores - 1)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads or RunConfig().resolved_cpu_threads())

    splits = load_dataset(DataConfig())
    mean, std = splits.channel_stats()
    train = BatchLoader(splits.train, a.batch_size, mean, std, shuffle=True)
    val = BatchLoader(splits.val, 256, mean, std)
    images = len(splits.train) * a.epochs

    bare_loop(*make(a.model, splits), train, val, 1)  # warm-up: kernels, allocator
    times = {"bare": [], "trainer": []}
    for _ in range(a.repeats):  # interleaved, so drift in machine load hits both alike
        times["bare"].append(bare_loop(*make(a.model, splits), train, val, a.epochs))
        times["trainer"].append(trainer_loop(*make(a.model, splits), train, val, a.epochs))
    bare, ours = statistics.median(times["bare"]), statistics.median(times["trainer"])
    print(f"model {a.model}, {len(splits.train)} train images x {a.epochs} epochs, "
          f"{a.repeats} interleaved repeats, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"bare loop : {images / bare:8.0f} images/s (median {bare:.3f} s)")
    print(f"Trainer   : {images / ours:8.0f} images/s (median {ours:.3f} s)")
    print(f"ratio Trainer / bare throughput: {bare / ours:.3f}  (target >= 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
