"""`python -m engine ...`: everything the dashboard does, from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from engine.cli.common import (
    add_data_and_optim_flags,
    add_kind_flags,
    config_from_flags,
    epoch_list,
    print_summary,
)
from engine.cli.comparisons import cmd_compare, cmd_groups, cmd_weights
from engine.cli.export import add_export_commands
from engine.cli.launch import (
    add_launch_flags,
    check_launch,
    follow,
    run_torchrun,
    torchrun_rank,
    wants_torchrun,
)
from engine.cli.project import add_project_command
from engine.config import (
    CONFIG_KINDS,
    ConfigError,
)
from engine.experiments.presets import PRESETS  # light: no torch
from engine.store.summary import best_metric


def cmd_train(a: argparse.Namespace) -> int:
    from engine.store import runs

    several = wants_torchrun(a)
    if a.run_dir:  # an existing run folder (how the launcher and torchrun start a run)
        run_dir = Path(a.run_dir)
        if several:
            check_launch(runs.load_config(run_dir), a)
    elif torchrun_rank() is not None:
        raise ConfigError(
            "under torchrun, train an existing run folder: --run-dir RUN (`python -m engine "
            "train ... --nproc N` makes one and prints the torchrun command)"
        )
    else:
        from engine.execution.start import start_run

        cfg = config_from_flags(a)
        if several:
            check_launch(cfg, a)
        # Everything checked before the run folder is made; then trained here, not launched.
        run_dir = start_run(cfg, a.runs_dir, launch=False)
        print(f"run folder: {run_dir}")
    if several:
        return run_torchrun("train", run_dir, a)
    return _execute(run_dir, resume=False, background=a.background, launched=bool(a.run_dir))


def cmd_resume(a: argparse.Namespace) -> int:
    from engine.store import runs

    run_dir = Path(a.run_dir) if a.run_dir else runs.resolve_run(a.run, a.runs_dir)
    if not a.run_dir:
        print(f"resuming {run_dir}")
    if a.resume_from == "best.pt" and a.background:
        raise ConfigError("--from best runs in the foreground (leave out --background)")
    if a.restart and (a.background or wants_torchrun(a) or a.resume_from != "last.pt"):
        raise ConfigError("--restart runs in this process: leave out --background, --nproc, --from")
    if wants_torchrun(a):
        check_launch(runs.load_config(run_dir), a)
        extra = ["--from", "best"] if a.resume_from == "best.pt" else []
        return run_torchrun("resume", run_dir, a, extra)
    return _execute(
        run_dir, resume=True, background=a.background, launched=bool(a.run_dir),
        resume_from=a.resume_from, restart=a.restart,
    )  # fmt: skip


def _execute(
    run_dir: Path,
    resume: bool,
    background: bool,
    launched: bool,
    resume_from: str = "last.pt",
    restart: bool = False,
) -> int:
    """`launched`: started by the launcher (hidden --run-dir), so it may wait in a queue."""
    from engine.execution import executor, launcher

    rank = torchrun_rank()
    if rank:  # one of torchrun's other processes: rank 0 keeps the books and prints
        follow(run_dir, resume, resume_from)
        return 0
    if background:
        pid = launcher.launch(run_dir, resume=resume)
        print(f"started in the background (pid {pid}); watch with: python -m engine show {run_dir}")
        return 0
    # A bar for a person at a terminal; a launched run's log gets no stream of \r updates.
    progress = sys.stderr.isatty() and (not launched or rank == 0)  # torchrun's: a terminal
    summary = executor.execute(
        run_dir, resume=resume, progress=progress, launched=launched, resume_from=resume_from,
        restart=restart,
    )  # fmt: skip
    print_summary(summary)
    return 1 if summary.get("stopped_before_start") else 0


def cmd_worker(a: argparse.Namespace) -> int:
    from engine.execution.worker import serve

    return serve()


def cmd_list(a: argparse.Namespace) -> int:
    from engine.store import runs

    rows = runs.list_runs(a.runs_dir)
    if not rows:
        print(f"no runs in {a.runs_dir or runs.default_runs_dir()}")
        return 0
    print(f"{'run':<40} {'state':<9} {'model':<10} {'data':<9} {'best val':>8} {'test':>6}")
    for r in rows:
        s = r.status.get("summary") or {}
        metric = best_metric(s) or "acc"  # segmentation runs: mean IoU
        best = f"{s[f'best_val_{metric}']:.4f}" if f"best_val_{metric}" in s else "-"
        test = f"{s[f'test_{metric}']:.4f}" if f"test_{metric}" in s else "-"
        if metric != "acc":
            best, test = f"{best} {metric}", f"{test} {metric}"
        print(f"{r.run_id:<40} {r.state:<9} {r.model:<10} {r.dataset:<9} {best:>8} {test:>6}")
        if r.state == "damaged":  # why, on the line below: the others stay a table
            print(f"  damaged: {r.status.get('error') or r.error}")
    return 0


def cmd_show(a: argparse.Namespace) -> int:
    from engine.store import runs
    from engine.store.layout import RunLayout

    run_dir = runs.resolve_run(a.run, a.runs_dir)
    status = runs.read_status(run_dir)
    layout = RunLayout(run_dir)
    print(f"run     {run_dir}")
    print(
        f"state   {status.get('state')}" + (f" ({status['error']})" if status.get("error") else "")
    )
    if status.get("created"):
        print(f"created {datetime.fromtimestamp(status['created']):%Y-%m-%d %H:%M:%S}")
    print(f"data    {status.get('data', '-')}")
    print("config  " + json.dumps(runs.load_config(run_dir).to_dict(), sort_keys=True))
    latest: dict[tuple, dict] = {}
    for e in runs.read_metrics(run_dir):
        latest[(e.get("split"), e["name"])] = e
    for (split, name), e in sorted(latest.items(), key=lambda kv: str(kv[0])):
        if e["value"] is not None:
            print(f"  {split}/{name:<14} {e['value']:.4f}  (epoch {e.get('epoch')})")
    snapshots = layout.embedding_epochs() or layout.mask_epochs()
    print(f"snapshots (epochs): {snapshots or 'none yet'}")
    return 0


def cmd_stop(a: argparse.Namespace) -> int:
    from engine.execution import launcher
    from engine.store import runs

    run_dir = runs.resolve_run(a.run, a.runs_dir)
    if launcher.stop(run_dir):
        print(f"asked {run_dir.name} to stop; it saves last.pt first")
        return 0
    print(f"{run_dir.name} is not running")
    return 1


def cmd_models(a: argparse.Namespace) -> int:
    import torch

    from engine.models import list_models, model_description
    from engine.models.profile import model_costs

    if a.seconds > 0:
        torch.set_num_threads(a.threads or torch.get_num_threads())
    names = a.names or list_models()
    unknown = [n for n in names if n not in list_models()]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; choose from {', '.join(list_models())}")
    speed = f"{'train img/s':>12}" if a.seconds > 0 else ""
    print(
        f"{'model':<16} {'params':>12} {'MACs':>16} {speed}  (input {a.image_size}x{a.image_size})"
    )
    for r in model_costs(names, a.image_size, seconds=a.seconds):
        ips = f"{r.images_per_second:>12.1f}" if r.images_per_second is not None else ""
        print(f"{r.name:<16} {r.params:>12,} {r.macs:>16,} {ips}  {model_description(r.name)}")
    return 0


def repeats_count(text: str) -> int:
    from engine.store.groups import MAX_REPEATS

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= n <= MAX_REPEATS:
        raise argparse.ArgumentTypeError(
            f"must be 1..{MAX_REPEATS} runs per row (1: one run; 3 or more for an interval "
            f"over seeds), got {n}"
        )
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    p.add_argument(
        "--runs-dir", default=None, help="runs folder (default: ./runs or $WORKBENCH_RUNS_DIR)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (a new run, or --run-dir an existing one)")
    t.add_argument("--config", help="a JSON config file (see README); flags are ignored then")
    t.add_argument("--run-dir", metavar="RUN",
                   help="train this run folder, made before (how torchrun starts each process)")  # fmt: skip
    t.add_argument(
        "--kind", default="classify", choices=list(CONFIG_KINDS),
        help="classify: a model from the registry; transfer: a pretrained backbone + new head; "
        "dynamic_filter: ENGN8536 Lab 4's per-class generated filters; segment: land-cover "
        "segmentation (DLCV HW1 problem 3); fewshot: prototypical networks (DLCV HW4 problem 1); ssl: BYOL "
        "self-supervised pretraining of a backbone (DLCV HW1 and HW4, problem 2)",
    )  # fmt: skip
    add_data_and_optim_flags(t)
    t.add_argument(
        "--model", default=None,
        help="model (classify; default small_cnn), backbone (transfer; default "
        "efficientnet_lite0, see `weights list`) or segmentation model (segment; default "
        "fcn8s_lite0; also fcn32s, unet_small, fcn_resnet50, deeplabv3_resnet50) or the "
        "backbone BYOL pretrains (ssl; default resnet18)",
    )  # fmt: skip
    add_kind_flags(t)
    t.add_argument(
        "--snapshot-every", type=int, default=None,
        help="snapshots (embeddings + confusion matrix; masks for segment) at epoch 1, every "
        "k-th and the last (2; segment 1)",
    )  # fmt: skip
    t.add_argument(
        "--snapshot-epochs", type=epoch_list, default=None, metavar="1,5,10",
        help="snapshot exactly at these epochs (instead of first, every k-th, last)",
    )  # fmt: skip
    t.add_argument(
        "--snapshot-size", type=int, default=None, metavar="N",
        help="validation images embedded per snapshot (2000; the Embeddings page stays "
        "interactive up to 10,000: a full Fashion-MNIST test set)",
    )  # fmt: skip
    t.add_argument("--name", default=None)
    t.add_argument("--background", action="store_true", help="start and return at once")
    add_launch_flags(t)
    t.set_defaults(func=cmd_train)

    presets = "; ".join(f"{k}: {v}" for k, v in PRESETS.items())
    c = sub.add_parser(
        "compare", help="a comparison group of runs from a preset (transfer modes, dynamic filters)",
        description="Make a comparison group of transfer runs (same split, seed, epochs and "
        "optimiser) from a preset and train its runs here, one after another, printing the "
        f"table at the end; --background queues them instead. Presets: {presets}.",
    )  # fmt: skip
    c.add_argument("--preset", default="finetune-vs-frozen", choices=list(PRESETS))
    c.add_argument(
        "--model", default=None,
        help="backbone (default efficientnet_lite0; resnet34-vs-mobilenet always uses resnet34 and "
        "mobilenet_v3_large)",
    )  # fmt: skip
    add_data_and_optim_flags(c)
    c.add_argument(
        "--backbone-lr-scale", type=float, default=None,
        help="transfer presets, fine-tuned rows: the backbone's lr is --lr times this (1; "
        "e.g. 0.1)",
    )  # fmt: skip
    c.add_argument("--no-scratch", action="store_true", help="finetune-vs-frozen: no scratch row")
    c.add_argument(
        "--no-frozen", action="store_true", help="dynamic-vs-static: no frozen-backbone row"
    )
    c.add_argument(
        "--ssl-weights", default=None, metavar="RUN_OR_FILE",
        help="a-e, rows C and E: a BYOL run (folder or id) or its backbone file",
    )  # fmt: skip
    c.add_argument(
        "--supervised-weights", default="imagenet", metavar="RUN_OR_FILE",
        help="a-e, rows B and D: 'imagenet' (when cached), or a supervised run (e.g. a transfer "
        "run from scratch on other classes) or weight file",
    )  # fmt: skip
    c.add_argument(
        "--repeats", type=repeats_count, default=1, metavar="N",
        help="runs per row, seeds --seed .. --seed + N - 1 on the same split: the table then "
        "shows mean +- 95%% CI over seeds and paired tests between rows (1; 3 or 5 to compare)",
    )  # fmt: skip
    c.add_argument(
        "--tune-lr", action="store_true",
        help="ablation: each optimiser at each rate of a small grid (SGD 0.1, 0.03, 0.01 with "
        "momentum 0.9; Adam 3e-3, 1e-3, 3e-4), 24 rows; the table keeps, per combination, the "
        "rate with the best validation accuracy and compares those",
    )  # fmt: skip
    c.add_argument("--background", action="store_true", help="queue the runs and return at once")
    c.add_argument(
        "--at-once", action="store_true",
        help="with --background: start all runs at the same time (a GPU with room)",
    )  # fmt: skip
    c.set_defaults(func=cmd_compare)

    g = sub.add_parser("groups", help="list comparison groups with their results; stop, resume")
    g.add_argument("group", nargs="?", help="one group id (default: all)")
    g.add_argument("--stop", action="store_true", help="stop the group's active runs")
    g.add_argument(
        "--resume", action="store_true", help="queue the group's unfinished runs (background)"
    )
    g.add_argument("--report", metavar="FILE.html", default=None,
                   help="write the group's table, curves and configs as one HTML page")  # fmt: skip
    g.set_defaults(func=cmd_groups)

    m = sub.add_parser("models", help="the registry's models: parameters, MACs, training speed")
    m.add_argument("names", nargs="*", help="models (default: all)")
    m.add_argument("--image-size", type=int, default=32)
    m.add_argument("--seconds", type=float, default=0.0,
                   help="time forward+backward this long per model (batch 32) and print "
                   "images per second; 0: no timing")  # fmt: skip
    m.add_argument("--threads", type=int, default=0, help="CPU threads for the timing")
    m.set_defaults(func=cmd_models)

    wt = sub.add_parser("weights", help="pretrained weights: list what is cached, fetch more")
    wsub = wt.add_subparsers(dest="weights_command", required=True)
    wsub.add_parser("list", help="every weight file, its size, and whether it is cached")
    wf = wsub.add_parser(
        "fetch", help="download a backbone's ImageNet weights, or a segmentation model's "
        "(fcn_resnet50, deeplabv3_resnet50: COCO with VOC labels); needs a network",
    )  # fmt: skip
    wf.add_argument("backbone", metavar="NAME", help="a backbone, or a segmentation model")
    wt.set_defaults(func=cmd_weights)

    r = sub.add_parser("resume", help="continue a stopped or killed run from last.pt")
    r.add_argument("run", nargs="?", help="run id (or unique prefix) or folder")
    r.add_argument("--run-dir", help=argparse.SUPPRESS)
    r.add_argument("--background", action="store_true")
    add_launch_flags(r)
    r.add_argument(
        "--from", dest="resume_from", default="last.pt", choices=["last.pt", "best.pt"],
        type=lambda v: {"last": "last.pt", "best": "best.pt"}.get(v, v),
        help="last (where it stopped; default) or best (the best validation accuracy so far)",
    )  # fmt: skip
    r.add_argument(
        "--restart", action="store_true",
        help="train the run again from epoch 1, replacing its metrics, snapshots and "
        "checkpoints (for a run with no checkpoint to resume from)",
    )  # fmt: skip
    r.set_defaults(func=cmd_resume)

    w = sub.add_parser("worker", help="(internal) a warm training process for the dashboard")
    w.set_defaults(func=cmd_worker)

    sub.add_parser("list", help="list runs").set_defaults(func=cmd_list)
    s = sub.add_parser("show", help="config, status and latest metrics of a run")
    s.add_argument("run")
    s.set_defaults(func=cmd_show)
    st = sub.add_parser("stop", help="stop a running run (it saves last.pt)")
    st.add_argument("run")
    st.set_defaults(func=cmd_stop)

    add_project_command(sub)

    add_export_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.command == "resume" and not (a.run or a.run_dir):
        print("error: resume needs a run id or folder", file=sys.stderr)
        return 2
    try:
        return a.func(a)
    # Every error meant for a person subclasses one of these (ConfigError, DataError: ValueError;
    # RunError, CheckpointError, WeightsError: RuntimeError); not importing them keeps torch out
    # of a queued run's waiting process.
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with: python -m engine resume RUN", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
