"""`python -m engine project RUN`: a snapshot's 2-D projection, to CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.config import ConfigError


def add_project_command(sub) -> None:
    pr = sub.add_parser("project", help="2-D projection of a snapshot's embeddings, to CSV")
    pr.add_argument("run")
    pr.add_argument("--method", default="pca", choices=["pca", "tsne", "umap"])
    pr.add_argument("--epoch", type=int, default=None, help="snapshot epoch (default: the last)")
    pr.add_argument("--perplexity", type=float, default=None, help="t-SNE perplexity")
    pr.add_argument("--n-neighbors", type=int, default=None, help="UMAP neighbours")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--out", default=None, help="CSV file (default: in the run's cache)")
    pr.add_argument("--force", action="store_true", help="replace --out if it exists")
    pr.add_argument("--metrics", action="store_true",
                    help="print, per snapshot epoch up to --epoch, how much to trust the 2-D "
                    "picture: trustworthiness and continuity of the layout against the "
                    "original features, and the features' kNN accuracy")  # fmt: skip
    pr.set_defaults(func=cmd_project)


def cmd_project(a: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from engine.analysis.projections import resolve_params
    from engine.inspect.projection_cache import project_run, projection_cache_dir
    from engine.inspect.snapshots import load_embedding
    from engine.store import runs
    from engine.store.layout import RunLayout

    run_dir = runs.resolve_run(a.run, a.runs_dir)
    epochs = RunLayout(run_dir).embedding_epochs()
    if not epochs:
        raise ConfigError(f"{run_dir.name} has no embedding snapshots yet")
    epoch = a.epoch if a.epoch is not None else epochs[-1]
    if epoch not in epochs:
        raise ConfigError(f"no snapshot at epoch {epoch}; snapshots exist at epochs {epochs}")
    given = (("perplexity", a.perplexity), ("n_neighbors", a.n_neighbors))
    params = {k: v for k, v in given if v is not None}
    try:  # said before the progress bar, not under it
        resolve_params(a.method, params)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if a.out and not Path(a.out).parent.is_dir():  # say so before minutes of t-SNE, not after
        raise ConfigError(f"--out {a.out}: the folder {Path(a.out).parent} does not exist")
    if a.out:  # never over a run's own files, never over a file without --force
        from engine.sharing.export import check_output

        runs_root = Path(a.runs_dir) if a.runs_dir else runs.default_runs_dir()
        check_output(Path(a.out), run_dir, runs_root, folder=False, force=a.force)
    with tqdm(total=sum(e <= epoch for e in epochs), desc=f"{a.method} projections") as bar:
        result = project_run(
            run_dir, a.method, params, seed=a.seed, epochs=[epoch],
            progress=lambda done, total, ep: bar.update(1),
        )  # fmt: skip
    if a.metrics:
        _print_metrics(run_dir, a, [e for e in epochs if e <= epoch], params)
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


def _print_metrics(run_dir: Path, a: argparse.Namespace, epochs: list[int], params) -> None:
    """Per epoch: trustworthiness / continuity of the layout, kNN accuracy of the features."""
    from engine.analysis.layout_quality import layout_quality
    from engine.inspect.projection_cache import project_run
    from engine.inspect.snapshots import load_embedding

    layouts = project_run(run_dir, a.method, params, seed=a.seed, epochs=epochs)
    print(f"{'epoch':>5} {'trustworthiness':>15} {'continuity':>10} {'kNN accuracy':>12}  points")
    for e in epochs:
        emb = load_embedding(run_dir, e)
        q = layout_quality(emb["features"], layouts[e], emb["labels"], seed=a.seed)
        print(f"{e:>5} {q.trustworthiness:>15.4f} {q.continuity:>10.4f} "
              f"{q.knn_accuracy:>12.2%}  {q.points} (k = {q.k})")  # fmt: skip
