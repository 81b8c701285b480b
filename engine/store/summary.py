"""Reading a run's summary (the dict a finished run writes into status.json): its metric and
a one-line account, the same for the command line and a warm worker's log."""

from __future__ import annotations


def summary_line(summary: dict) -> str:
    """A finished (or stopped) run's summary in one line, as the command line prints it."""
    if summary.get("stopped_before_start"):
        return "stopped while waiting for its turn; nothing was trained"
    metric = best_metric(summary)
    parts = [f"epochs {summary.get('epochs_done')}"]
    if metric:
        parts.append(f"best val {metric} {summary[f'best_val_{metric}']:.4f}")
    for k, r in shot_results(summary).items():  # few-shot: each K's accuracy over its episodes
        parts.append(f"{k}shot {r['acc']:.2%} ± {r['ci95']:.2%}")
    if isinstance(summary.get("test_csv"), dict):
        r = summary["test_csv"]
        parts.append(f"episode file ({r['episodes']} episodes) {r['acc']:.2%} ± {r['ci95']:.2%}")
    if any(k.endswith("shot") and k.startswith("test_") for k in summary):
        return ", ".join(parts)
    if "knn_acc_random_init" in summary:  # self-supervised: what the training bought
        parts.append(f"random-init backbone knn_acc {summary['knn_acc_random_init']:.4f}"
                     + (f" (test {summary['test_knn_acc_random_init']:.4f})"
                        if "test_knn_acc_random_init" in summary else ""))  # fmt: skip
    for name in ("miou", "knn_acc", "acc"):
        if f"test_{name}" in summary:
            parts.append(f"test {name} {summary[f'test_{name}']:.4f}" + interval_text(summary))
            if name == "knn_acc":
                break  # a BYOL run's test acc is its kNN accuracy
    return ", ".join(parts)


def interval_text(summary: dict) -> str:
    """' [0.8231, 0.8377] (95%, Wilson, over test images)', or '' without one."""
    iv = summary.get("test_interval")
    if not isinstance(iv, dict) or not all(
        isinstance(iv.get(k), int | float) for k in ("low", "high")
    ):
        return ""
    return f" [{iv['low']:.4f}, {iv['high']:.4f}] (95%, {iv.get('method', '')})"


def best_metric(summary: dict) -> str | None:
    """The metric a run was scored by ("acc", or "miou" for segmentation), from its summary."""
    for key in summary:
        if key.startswith("best_val_"):
            return key.removeprefix("best_val_")
    return None


def shot_results(summary: dict) -> dict[int, dict]:
    """A few-shot run's test results by K: {K: {"acc", "ci95", ...}} from its `test_<K>shot`
    entries (what is not a well-formed result is left out)."""
    out = {}
    for key, r in summary.items():
        k = key.removeprefix("test_").removesuffix("shot")
        if key.startswith("test_") and key.endswith("shot") and k.isdigit() and isinstance(r, dict):
            out[int(k)] = r
    return out
