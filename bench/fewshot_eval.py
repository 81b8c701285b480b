"""Few-shot evaluation: every test image embedded once per pass (the workbench) vs every
episode pushing its own support and query images through the network.

The same untrained-but-fixed prototypical network (eval mode), the same 5-way K-shot test
episodes of the digits' meta-test classes. The reference (per-episode embedding) is timed
on a sample of the episodes and scaled to `--episodes`; both sides are checked to give the
same logits. Prints seconds for `--episodes` episodes on each side and their ratio.

    python bench/fewshot_eval.py [--shots 5] [--episodes 600] [--sample 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from engine.config import FewShotConfig
from engine.data.episodes import load_fewshot
from engine.experiments.fewshot import evaluation_loader
from engine.models.protonet import PrototypicalNetwork


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--sample", type=int, default=30, help="episodes timed per episode")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = FewShotConfig(test_episodes=a.episodes, test_shots=[a.shots])
    splits = load_fewshot(cfg)
    mean, std = splits.channel_stats()
    model = PrototypicalNetwork().eval()

    with torch.no_grad():
        table = evaluation_loader(cfg, splits, a.shots, mean, std, "cpu", model.embed)
        started = time.perf_counter()
        fast = [model(ep) for ep, _, _ in table.batches()]
        ours = time.perf_counter() - started

        each = evaluation_loader(cfg, splits, a.shots, mean, std, "cpu")
        started = time.perf_counter()
        slow = [model(each.get(i)[0]) for i in range(a.sample)]
        reference = (time.perf_counter() - started) * a.episodes / a.sample

    same = all(
        torch.allclose(f, s, rtol=1e-4, atol=1e-3)
        for f, s in zip(fast[: a.sample], slow, strict=True)
    )
    print(f"{a.episodes} episodes, 5-way {a.shots}-shot, 15 queries, {a.threads} threads")
    print(f"  embedded once per pass: {ours:.2f} s ({a.episodes / ours:.0f} episodes/s)")
    print(f"  embedded per episode:   {reference:.2f} s (from {a.sample} episodes)")
    print(f"  ratio: {reference / ours:.1f}x; same logits: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
