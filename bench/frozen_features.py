"""Frozen-backbone transfer: features computed once vs the backbone recomputed every epoch
(and, with --tutorial, torchvision's tutorial: random resized crops, BatchNorm statistics
updated, which must run the backbone every epoch).

Real transfer runs (the experiment code the dashboard uses), the same backbone, data, seed
and head, frozen mode; one with `precompute_features` (each image's features computed once,
the head trains on them), one without (every epoch pushes every image through the frozen
backbone, as a plain "requires_grad = False" loop does, the NTHU homework's task C).
Interleaved and repeated; prints the per-epoch ratio of medians and the ratio including the
one-off feature pass.

    python bench/frozen_features.py [--backbone efficientnet_lite0] [--epochs 3] [--repeats 3]
    python bench/frozen_features.py --backbone resnet34 --weights none --image-size 256 \
        --train-images 244 --tutorial     # the homework's setting, timed on this machine
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from engine.config import DataConfig, ModelConfig, TransferConfig
from engine.execution import executor
from engine.store import runs

VARIANTS = {
    "once": dict(precompute_features=True),
    "backbone": dict(precompute_features=False),
    "tutorial": dict(precompute_features=False, preprocess="tutorial", batchnorm="updated"),
}


def one_run(root: Path, variant: str, a: argparse.Namespace) -> tuple[float, float, float]:
    """(median seconds per epoch, one-off feature seconds, best val acc) of one frozen run."""
    data = DataConfig(image_size=a.image_size)
    if a.train_images:  # the digits cut to a two-class set of this size, as hymenoptera
        data.classes, data.class_counts = ["0", "1"], [a.train_images // 2] * 2
    cfg = TransferConfig(
        model=ModelConfig(name=a.backbone), data=data, weights=a.weights, mode="frozen",
        epochs=a.epochs, snapshot_every=a.epochs, cpu_threads=a.threads, **VARIANTS[variant],
    ).validate()  # fmt: skip
    run_dir = runs.create_run(cfg, root)
    summary = executor.execute(run_dir)
    seconds = [e["value"] for e in runs.read_metrics(run_dir) if e["name"] == "epoch_seconds"]
    return statistics.median(seconds), summary.get("feature_seconds", 0.0), summary["best_val_acc"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--weights", default="imagenet", help="imagenet, or none (times alike)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--train-images", type=int, default=0, help="0: all the digits' training "
                    "images (1,259); else two classes of this many images in all")  # fmt: skip
    ap.add_argument("--tutorial", action="store_true", help="time the tutorial's variant too")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="0: what a run uses (cores - 1)")
    a = ap.parse_args()
    names = [*VARIANTS] if a.tutorial else ["once", "backbone"]
    times: dict[str, list[float]] = {n: [] for n in names}
    accs: dict[str, list[float]] = {n: [] for n in names}
    feature_pass = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeats):
            for name in names if i % 2 == 0 else names[::-1]:
                epoch_s, feat_s, acc = one_run(Path(tmp), name, a)
                times[name].append(epoch_s)
                accs[name].append(acc)
                if name == "once":
                    feature_pass.append(feat_s)
    med = {n: statistics.median(v) for n, v in times.items()}
    e = a.epochs
    whole = (e * med["backbone"]) / (statistics.median(feature_pass) + e * med["once"])
    what = f"{a.train_images} images of 2 digit classes" if a.train_images else "1,259 images"
    print(f"{a.backbone} ({a.weights} weights) at {a.image_size} px, frozen, digits ({what}), "
          f"{a.epochs} epochs x {a.repeats} interleaved repeats")  # fmt: skip
    print(f"  recomputing the backbone every epoch: {med['backbone']:.2f} s/epoch")
    if a.tutorial:
        print(f"  the tutorial's (random resized crops to {round(a.image_size * 224 / 256)} px, "
              f"BatchNorm updated): {med['tutorial']:.2f} s/epoch")  # fmt: skip
    print(f"  features computed once:               {med['once']:.3f} s/epoch "
          f"(+ {statistics.median(feature_pass):.1f} s once for every image)")  # fmt: skip
    print("  best val acc: " + ", ".join(f"{n} {statistics.median(v):.4f}"
                                         for n, v in accs.items()))  # fmt: skip
    print(f"ratio per epoch (target >= 5): {med['backbone'] / med['once']:.0f}x")
    print(f"ratio for the whole {e}-epoch run, feature pass included: {whole:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
