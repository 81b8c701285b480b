"""Frozen-backbone transfer: features computed once vs the backbone recomputed every epoch.

Two real transfer runs (the experiment code the dashboard uses), the same backbone, data,
seed and head, frozen mode; one with `precompute_features` (each image's features computed
once, the head trains on them), one without (every epoch pushes every image through the
frozen backbone, as a plain "requires_grad = False" loop does). Interleaved and repeated;
prints the per-epoch ratio of medians and the ratio including the one-off feature pass.

    python bench/frozen_features.py [--backbone efficientnet_lite0] [--epochs 3] [--repeats 3]
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


def one_run(root: Path, precompute: bool, a: argparse.Namespace) -> tuple[float, float, float]:
    """(median seconds per epoch, one-off feature seconds, best val acc) of one frozen run."""
    cfg = TransferConfig(
        model=ModelConfig(name=a.backbone), data=DataConfig(image_size=a.image_size),
        mode="frozen", epochs=a.epochs, precompute_features=precompute, snapshot_every=a.epochs,
        cpu_threads=a.threads,
    )  # fmt: skip
    run_dir = runs.create_run(cfg, root)
    summary = executor.execute(run_dir)
    seconds = [e["value"] for e in runs.read_metrics(run_dir) if e["name"] == "epoch_seconds"]
    return statistics.median(seconds), summary.get("feature_seconds", 0.0), summary["best_val_acc"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="0: what a run uses (cores - 1)")
    a = ap.parse_args()
    cached, recomputed, feature_pass, accs = [], [], [], {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeats):
            for precompute in (True, False) if i % 2 == 0 else (False, True):
                epoch_s, feat_s, acc = one_run(Path(tmp), precompute, a)
                (cached if precompute else recomputed).append(epoch_s)
                if precompute:
                    feature_pass.append(feat_s)
                accs[precompute].append(acc)
    per_epoch = statistics.median(recomputed) / statistics.median(cached)
    e = a.epochs
    whole = (e * statistics.median(recomputed)) / (
        statistics.median(feature_pass) + e * statistics.median(cached)
    )
    print(f"{a.backbone} at {a.image_size} px, frozen, digits (1,259 train images), "
          f"{a.epochs} epochs x {a.repeats} interleaved repeats")  # fmt: skip
    print(f"  recomputing the backbone every epoch: {statistics.median(recomputed):.2f} s/epoch")
    print(f"  features computed once:               {statistics.median(cached):.3f} s/epoch "
          f"(+ {statistics.median(feature_pass):.1f} s once for all 1,797 images)")  # fmt: skip
    print(f"  best val acc: once {statistics.median(accs[True]):.4f}, "
          f"recomputed {statistics.median(accs[False]):.4f}")  # fmt: skip
    print(f"ratio per epoch (target >= 5): {per_epoch:.0f}x")
    print(f"ratio for the whole {e}-epoch run, feature pass included: {whole:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
