"""Projections of embedding snapshots: t-SNE against scikit-learn, PCA, UMAP, and the disk cache.

1. t-SNE, 10,000 x 512: scikit-learn's `TSNE` (Barnes-Hut) against openTSNE called with the
   parameters the workbench's `_tsne` uses (perplexity and iterations from its defaults, PCA
   init, seed), both with `--jobs` threads (sklearn's `n_jobs` reaches only its neighbour
   search; its gradient uses OpenMP threads, capped at `--jobs` too). openTSNE is called
   directly, not through `project`, because `project` returns bare coordinates (no KL
   divergence) and pins `n_jobs=1`; `project(x, "tsne")` itself is timed as a third line,
   as the workbench runs it.
   sklearn counts the 250 early-exaggeration iterations in `max_iter`, openTSNE adds them to
   `n_iter`, so both run 250 + 500. Each library's own KL divergence is printed, and, so that
   "comparable" does not rest on two different approximations, the KL of every layout against
   one affinity matrix (exact 90 neighbours, perplexity 30) with Q computed exactly.
   Comparable: within 5% of scikit-learn's. Each runs once by default (minutes at full size);
   `--tsne-repeats` interleaves more and takes medians.
2. PCA, 50,000 x 512: `project(x, "pca")` against the 1 s target, with scikit-learn's
   `PCA(svd_solver="full")` on the same matrix as the in-run reference; `--repeats`
   interleaved repeats, medians.
3. UMAP, 10,000 x 512: `project(x, "umap")`, after one warm-up call on small data (umap and
   pynndescent compile their numba functions on first use; the warm-up sits on the same side
   of umap's 4,096-point switch from exact to approximate neighbours as the timed call, as the
   two compile different functions), so the time is the projection's, not the compiler's.
4. The disk cache: a run folder with embedding snapshots written as a run writes them (the
   default snapshot schedule and size of `RunConfig`, `save_npz` into
   `artifacts/embeddings/epoch_NNNN.npz`); `project_run` once (computes the chain and caches
   it), then the second call, timed (target < 50 ms).

Features are a seeded stand-in for a CNN's penultimate features (`penultimate_features`):
10 Gaussian clusters in a 32-dimensional latent space, mapped linearly into 512 dimensions,
plus isotropic noise, through a ReLU; float32. All of it runs under `--jobs` BLAS/OpenMP threads
(default: the cores this process may use). `--quick` shrinks every size, to check the script in
a minute or two; the full sizes take minutes of every core.

    python bench/projections.py [--quick] [--jobs N] [--repeats 3] [--tsne-repeats 1]
        [--seed 0] [--only tsne pca umap cache] [--cache-method tsne]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from engine.analysis.projections import project, resolve_params
from engine.config import RunConfig
from engine.core.atomic import save_npz
from engine.inspect.projection_cache import project_run
from engine.store.layout import RunLayout

PCA_TARGET_S = 1.0
TSNE_SPEEDUP_TARGET = 3.0
KL_TOLERANCE = 1.05  # openTSNE's KL may exceed scikit-learn's by 5% and still be "comparable"
CACHE_TARGET_S = 0.050
EARLY_EXAGGERATION_ITER = 250  # openTSNE's default; fixed in scikit-learn
UMAP_EXACT_BELOW = 4096  # umap-learn's switch from exact to approximate neighbours


def penultimate_features(
    n: int,
    dim: int = 512,
    classes: int = 10,
    rank: int = 32,
    separation: float = 1.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 features and (n,) labels, shaped like a trained CNN's penultimate layer.

    Class centres (std `separation`) plus unit within-class noise live in a `rank`-d latent
    space (features are low-rank), a fixed random map takes them to `dim`, isotropic noise
    (std 0.3) is added, and a ReLU follows, as it does in a network. The same seed gives the
    same samples and labels for any `separation`, so raising it imitates training sharpening
    the clusters of the same validation images.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(classes, size=n)
    centres = separation * rng.standard_normal((classes, rank), dtype=np.float32)
    mixing = rng.standard_normal((rank, dim), dtype=np.float32) / np.sqrt(rank)
    latent = centres[labels] + rng.standard_normal((n, rank), dtype=np.float32)
    x = latent @ mixing + 0.3 * rng.standard_normal((n, dim), dtype=np.float32)  # (n, dim)
    return np.maximum(x, 0.0).astype(np.float32), labels


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def exact_kl(P, layout: np.ndarray, chunk: int = 512) -> float:
    """KL(P || Q) of a 2-D layout, with Q exact (no Barnes-Hut or FFT approximation).

    P: sparse symmetric affinities summing to 1. Q_ij = w_ij / Z, w_ij = 1 / (1 + |y_i - y_j|^2),
    Z summed over all pairs i != j, in row chunks (10,000 points: ~80 MB at a time).
    """
    y = np.asarray(layout, dtype=np.float64)
    z = 0.0
    for start in range(0, len(y), chunk):
        block = y[start : start + chunk]
        d2 = ((block[:, None, :] - y[None, :, :]) ** 2).sum(-1)  # (chunk, N)
        z += (1.0 / (1.0 + d2)).sum() - len(block)  # w_ii = 1 is not a pair
    P = P.tocoo()
    P.eliminate_zeros()
    w = 1.0 / (1.0 + ((y[P.row] - y[P.col]) ** 2).sum(1))
    return float(np.sum(P.data * np.log(P.data / w)) + P.data.sum() * np.log(z))


def bench_tsne(x: np.ndarray, jobs: int, repeats: int, seed: int) -> dict:
    from openTSNE import TSNE as OpenTSNE
    from openTSNE.affinity import PerplexityBasedNN
    from sklearn.manifold import TSNE as SklearnTSNE

    params = resolve_params("tsne")  # the workbench's defaults
    sklearn_tsne = SklearnTSNE(
        n_components=2, perplexity=params["perplexity"], init="pca", n_jobs=jobs,
        max_iter=EARLY_EXAGGERATION_ITER + params["n_iter"], random_state=seed,
    )  # fmt: skip
    open_tsne = OpenTSNE(
        n_components=2, perplexity=params["perplexity"], n_iter=params["n_iter"],
        early_exaggeration_iter=EARLY_EXAGGERATION_ITER, initialization="pca", n_jobs=jobs,
        random_state=seed, verbose=False,
    )  # fmt: skip
    times = {"sklearn": [], "opentsne": [], "project": []}
    for _ in range(repeats):  # interleaved when repeated; one run each by default (minutes)
        t, sklearn_layout = timed(lambda: sklearn_tsne.fit_transform(x))
        times["sklearn"].append(t)
        t, open_embedding = timed(lambda: open_tsne.fit(x))
        times["opentsne"].append(t)
        t, project_layout = timed(lambda: project(x, "tsne", seed=seed))
        times["project"].append(t)

    common = PerplexityBasedNN(
        x, perplexity=params["perplexity"], method="exact", n_jobs=jobs, random_state=seed
    ).P
    return {
        "params": params,
        **{k: statistics.median(ts) for k, ts in times.items()},
        "all": times,
        "sklearn_kl": float(sklearn_tsne.kl_divergence_),
        "opentsne_kl": float(open_embedding.kl_divergence),
        "sklearn_exact_kl": exact_kl(common, sklearn_layout),
        "opentsne_exact_kl": exact_kl(common, np.asarray(open_embedding)),
        "project_exact_kl": exact_kl(common, project_layout),
    }


def same_up_to_sign(a: np.ndarray, b: np.ndarray) -> bool:
    # A principal axis is defined up to its sign; a solver may pick either.
    return all(abs(np.corrcoef(a[:, k], b[:, k])[0, 1]) > 0.999 for k in range(2))


def bench_pca(x: np.ndarray, repeats: int, seed: int) -> dict:
    from sklearn.decomposition import PCA

    def reference():
        return PCA(n_components=2, svd_solver="full", random_state=seed).fit_transform(x)

    def ours():
        return project(x, "pca", seed=seed)

    reference()  # warm-up: BLAS thread pool, page faults on the matrix
    times = {"sklearn": [], "project": []}
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        t, ref_layout = timed(reference)
        times["sklearn"].append(t)
        t, our_layout = timed(ours)
        times["project"].append(t)
    return {
        "sklearn": statistics.median(times["sklearn"]),
        "project": statistics.median(times["project"]),
        "all": times,
        "same": same_up_to_sign(ref_layout, our_layout),
    }


def bench_umap(x: np.ndarray, seed: int) -> dict:
    # umap takes exact neighbours below 4,096 points and pynndescent above, which compile
    # different numba functions: warm up on the same side of that line as the timed call.
    n_warm = 300 if x.shape[0] < UMAP_EXACT_BELOW else UMAP_EXACT_BELOW + 100
    small, _ = penultimate_features(n_warm, dim=16, seed=seed + 1)
    warm, _ = timed(lambda: project(small, "umap", seed=seed))
    t, _ = timed(lambda: project(x, "umap", seed=seed))
    return {"project": t, "warmup": (n_warm, warm), "params": resolve_params("umap")}


def write_run(root: Path, epochs: list[int], n: int, dim: int, seed: int) -> None:
    """Embedding snapshots of one run, written the way a run writes them (atomic, compressed)."""
    layout = RunLayout(root)
    for i, epoch in enumerate(epochs):
        features, labels = penultimate_features(n, dim, separation=0.5 + 0.5 * i, seed=seed)
        save_npz(
            layout.embedding_file(epoch), features=features, labels=labels.astype(np.int64),
            predictions=labels.astype(np.int64), sample_ids=np.arange(n, dtype=np.int64),
        )  # fmt: skip


def bench_cache(epochs: list[int], n: int, dim: int, method: str, repeats: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        write_run(run_dir, epochs, n, dim, seed)
        first, computed = timed(lambda: project_run(run_dir, method, seed=seed))
        second, cached = timed(lambda: project_run(run_dir, method, seed=seed))
        more = [timed(lambda: project_run(run_dir, method, seed=seed))[0] for _ in range(repeats)]
    same = computed.keys() == cached.keys() and all(
        np.array_equal(computed[e], cached[e]) for e in computed
    )
    return {"first": first, "second": second, "more": more, "same": same}


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine(jobs: int) -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    packages = ["torch", "scikit-learn", "openTSNE", "umap-learn", "numba", "numpy"]
    versions = ", ".join(f"{name} {package_version(name)}" for name in packages)
    return (
        f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable; {jobs} jobs/threads), "
        f"{cpu}; Python {platform.python_version()}, {versions}"
    )


Row = tuple[str, str, str, str, str, bool | None]


def report_tsne(n: int, dim: int, jobs: int, repeats: int, seed: int) -> list[Row]:
    x, _ = penultimate_features(n, dim, seed=seed)
    r = bench_tsne(x, jobs, repeats, seed)
    name, p = f"t-SNE {n:,} x {dim}", r["params"]
    print(
        f"\n{name}: perplexity {p['perplexity']:g}, "
        f"{EARLY_EXAGGERATION_ITER} + {p['n_iter']} iterations, PCA init; KL: own / exact"
    )
    print(
        f"  {f'sklearn TSNE, n_jobs {jobs}:':<27}{r['sklearn']:7.2f} s  "
        f"KL {r['sklearn_kl']:.4f} / {r['sklearn_exact_kl']:.4f}"
    )
    print(
        f"  {f'openTSNE, n_jobs {jobs}:':<27}{r['opentsne']:7.2f} s  "
        f"KL {r['opentsne_kl']:.4f} / {r['opentsne_exact_kl']:.4f}"
    )
    print(
        f"  project(x, 'tsne') as is:  {r['project']:7.2f} s  "
        f"KL    -   / {r['project_exact_kl']:.4f}"
    )
    rows = []
    for label, time_key, kl_key in [
        ("openTSNE ", "opentsne", "opentsne_exact_kl"),
        ("", "project", "project_exact_kl"),
    ]:
        ratio = r["sklearn"] / r[time_key]
        comparable = r[kl_key] <= KL_TOLERANCE * r["sklearn_exact_kl"]
        print(
            f"  ratio sklearn / {time_key}: {ratio:.2f}x, KL comparable: {comparable} "
            f"(target >= {TSNE_SPEEDUP_TARGET:g}x at KL <= {KL_TOLERANCE:g}x sklearn's)"
        )
        rows.append(
            (
                name if time_key == "opentsne" else f"{name}, `project()` as is",
                f"sklearn {r['sklearn']:.1f} s, KL {r['sklearn_exact_kl']:.3f}",
                f"{label}{r[time_key]:.1f} s, KL {r[kl_key]:.3f}",
                f"{ratio:.2f}x",
                f">= {TSNE_SPEEDUP_TARGET:g}x, KL <= {KL_TOLERANCE:g}x",
                ratio >= TSNE_SPEEDUP_TARGET and comparable,
            )
        )
    return rows


def report_pca(n: int, dim: int, repeats: int, seed: int) -> list[Row]:
    x, _ = penultimate_features(n, dim, seed=seed)
    r = bench_pca(x, repeats, seed)
    name, ratio = f"PCA {n:,} x {dim}", r["sklearn"] / r["project"]
    each = {k: " / ".join(f"{t:.3f}" for t in ts) for k, ts in r["all"].items()}
    print(f"\n{name}: {repeats} interleaved repeats, medians")
    print(f"  sklearn PCA, full SVD: {r['sklearn']:.3f} s ({each['sklearn']})")
    print(f"  project(x, 'pca'):     {r['project']:.3f} s ({each['project']})")
    print(
        f"  ratio sklearn / project: {ratio:.2f}x; same layout (up to sign): {r['same']}; "
        f"target project <= {PCA_TARGET_S:g} s"
    )
    return [
        (
            name,
            f"sklearn full SVD {r['sklearn']:.2f} s",
            f"{r['project']:.2f} s",
            f"{ratio:.2f}x",
            f"<= {PCA_TARGET_S:g} s",
            r["project"] <= PCA_TARGET_S and r["same"],
        )
    ]


def report_umap(n: int, dim: int, seed: int) -> list[Row]:
    x, _ = penultimate_features(n, dim, seed=seed)
    r = bench_umap(x, seed)
    name, p, (n_warm, warm) = f"UMAP {n:,} x {dim}", r["params"], r["warmup"]
    print(f"\n{name}: n_neighbors {p['n_neighbors']}, min_dist {p['min_dist']:g}")
    print(f"  numba warm-up, project() on {n_warm:,} x 16: {warm:.1f} s")
    print(f"  project(x, 'umap'): {r['project']:.2f} s")
    return [(name, "-", f"{r['project']:.1f} s", "-", "-", None)]


def report_cache(
    epochs: list[int], n: int, dim: int, method: str, repeats: int, seed: int
) -> list[Row]:
    r = bench_cache(epochs, n, dim, method, repeats, seed)
    name = f"cache: `project_run` {method}, {len(epochs)} snapshots x {n:,}"
    ratio = r["first"] / r["second"]
    more = " / ".join(f"{t * 1000:.1f}" for t in r["more"])
    print(f"\n{name} x {dim} (epochs {', '.join(map(str, epochs))})")
    print(f"  first call (computes, caches): {r['first']:.2f} s")
    print(
        f"  second call (cached):          {r['second'] * 1000:.1f} ms "
        f"(then {more} ms); same layouts: {r['same']}"
    )
    print(f"  ratio first / second: {ratio:.0f}x; target second < {CACHE_TARGET_S * 1000:g} ms")
    return [
        (
            name,
            f"first call {r['first']:.2f} s",
            f"second call {r['second'] * 1000:.1f} ms",
            f"{ratio:.0f}x",
            f"< {CACHE_TARGET_S * 1000:g} ms",
            r["second"] < CACHE_TARGET_S and r["same"],
        )
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    ap.add_argument("--jobs", type=int, default=0, help="threads / n_jobs; 0: every usable core")
    ap.add_argument("--repeats", type=int, default=3, help="PCA and cache repeats")
    ap.add_argument("--tsne-repeats", type=int, default=1, help="t-SNE repeats (interleaved)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dim", type=int, default=512)
    parts = ["tsne", "pca", "umap", "cache"]
    ap.add_argument("--only", nargs="+", choices=parts, default=parts)
    ap.add_argument("--cache-method", default="tsne", choices=["pca", "tsne", "umap"])
    a = ap.parse_args()
    jobs = a.jobs or len(os.sched_getaffinity(0))

    run = RunConfig()  # a run's default snapshot schedule and size, for the cache
    if a.quick:
        n_tsne, n_pca, n_umap = 2_000, 10_000, 2_000
        cache_epochs, cache_n = run.snapshot_schedule()[:3], 1_000
    else:
        n_tsne, n_pca, n_umap = 10_000, 50_000, 10_000
        cache_epochs, cache_n = run.snapshot_schedule(), run.snapshot_size

    from threadpoolctl import threadpool_limits

    print(f"machine: {machine(jobs)}")
    quick = " (--quick sizes)" if a.quick else ""
    print(f"features: 10 clusters, rank 32, ReLU, float32, seed {a.seed}{quick}")
    rows: list[Row] = []
    with threadpool_limits(limits=jobs):  # BLAS and OpenMP (sklearn's Barnes-Hut) alike
        if "tsne" in a.only:
            rows += report_tsne(n_tsne, a.dim, jobs, a.tsne_repeats, a.seed)
        if "pca" in a.only:
            rows += report_pca(n_pca, a.dim, a.repeats, a.seed)
        if "umap" in a.only:
            rows += report_umap(n_umap, a.dim, a.seed)
        if "cache" in a.only:
            rows += report_cache(cache_epochs, cache_n, a.dim, a.cache_method, a.repeats, a.seed)

    print("\n| benchmark | reference | workbench | ratio | target | met? |")
    print("|---|---|---|---|---|---|")
    for name, reference, ours, ratio, target, met in rows:
        verdict = "-" if met is None else ("**yes**" if met else "no")
        print(f"| {name} | {reference} | {ours} | {ratio} | {target} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
