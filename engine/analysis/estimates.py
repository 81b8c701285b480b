"""How long a run will take here, said before the click and refined while it trains.

Before, the first that applies:
1. runs that finished on this machine with the same settings (all but the name, the seeds and
   the comparison group): the median of their whole times, start to end;
2. the cost of one training image per epoch (validation included) for the run's kind, model
   and input size, from the runs that finished here (their summaries keep their median epoch
   time and training images), times the training images and epochs the config asks for, plus
   those runs' median time outside their epochs (start-up, the test, the masks or snapshots
   saved); a run at another size is scaled by the pixel count;
3. the same from a reference measured on the project's 2-core CPU machine (README "Models",
   docs/benchmarks.md), plus a fixed start-up.
During: the epochs left times the mean of the epochs done.

Torch-free: the pages import it on every rerun.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass

from engine.config import RunConfig

# Seconds per training image per epoch (validation included), (kind, model) at `REF_SIZE`
# px, on the project's 2-core CPU machine (one training thread): small_cnn from the Home demo,
# the ResNets from the model table, the others from docs/benchmarks.md's tables.
REF_SIZE = 32
REFERENCE = {
    ("classify", "small_cnn"): 0.0006,
    ("classify", "resnet18"): 0.021,
    ("classify", "resnet34"): 0.044,
    ("classify", "resnet50"): 0.070,
    ("classify", "resnext18"): 0.015,
    ("classify", "resnext50"): 0.078,
    ("transfer", "efficientnet_lite0"): 0.019,
    ("transfer", "resnet18"): 0.021,
    ("transfer", "resnet34"): 0.044,
    ("transfer", "mobilenet_v3_large"): 0.012,
    ("dynamic_filter", "dynamic_filter"): 0.0018,
    ("ssl", "resnet18"): 0.024,
    ("segment", "fcn8s_lite0"): 0.045,  # 10.7 s / 240 images at 128 px
    ("segment", "fcn32s"): 0.725,  # 174 s / 240 images at 128 px
}
FEATURES_EPOCH = 0.05  # a frozen head's epoch on features computed once: milliseconds
# Few-shot at 84 px (Conv-4 + MLP), on the project's 2-core machine: seconds per training or
# validation episode (the K x distance grid: 142 s an epoch of 100 + 100), per test episode
# (5-way, one K), and a run's fixed cost past the start-up (the images at 84 px, snapshots).
FEWSHOT_EPISODE = 0.71
FEWSHOT_TEST_EPISODE = 0.19
FEWSHOT_FIXED = 30.0
STARTUP = 4.0  # seconds a run spends before its first step: a process, torch, the data
SLOW = 600.0  # past this, a CPU-only machine's form suggests the quick settings

# Training images of the datasets whose size is known without reading them (after the
# validation / test split at the default fractions).
KNOWN_TRAIN = {"digits": 1259, "fashion_mnist": 51000, "mnist": 51000, "kmnist": 51000,
               "cifar10": 42500, "landcover": 240}  # fmt: skip
_TRAIN_IMAGES = re.compile(r"(\d[\d,]*) train")


@dataclass(frozen=True)
class Estimate:
    seconds: float  # the whole run
    per_epoch: float
    epochs: int
    basis: str  # where the per-image cost came from
    here: bool = False  # learned from runs of these settings, or this model and size, here

    def text(self) -> str:
        return (f"{duration(self.seconds)} here: start-up + {self.epochs} epoch"
                f"{'s' if self.epochs != 1 else ''} x {duration(self.per_epoch)} "
                f"({self.basis})")  # fmt: skip

    @property
    def slow(self) -> bool:
        return self.seconds > SLOW


def duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def train_images(cfg: RunConfig) -> int | None:
    """The training images `cfg` asks for, when known without reading the data."""
    d = cfg.data
    if d.class_counts:
        return sum(d.class_counts)
    n = KNOWN_TRAIN.get(d.name if d.name != "landcover" or not d.path else "")
    if n is None:
        return None
    if d.classes:
        n = round(n * len(d.classes) / 10)
    return n


IGNORED = ("name", "seed", "group")  # settings that do not change a run's time


def recipe(cfg: dict) -> str:
    """A config's settings that decide its time: all but the name, the seeds and the group."""
    d = {k: v for k, v in cfg.items() if k not in IGNORED}
    d["data"] = {k: v for k, v in (d.get("data") or {}).items() if k != "split_seed"}
    return json.dumps(d, sort_keys=True, default=str)


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def _key(cfg: dict) -> tuple[str, str, int]:
    return (cfg.get("kind", "classify"), (cfg.get("model") or {}).get("name", ""),
            int((cfg.get("data") or {}).get("image_size", REF_SIZE)))  # fmt: skip


def measured_costs(finished: list[tuple[dict, dict]]) -> dict[tuple[str, str, int], list[float]]:
    """Seconds per training image per epoch of each (kind, model, size), from (config,
    summary) pairs of finished runs: their median epoch time over their training images.
    Frozen heads on features (milliseconds an epoch) and few-shot runs are left out."""
    out: dict[tuple[str, str, int], list[float]] = {}
    for cfg, summary in finished:
        spe = summary.get("seconds_per_epoch")
        m = _TRAIN_IMAGES.search(str(summary.get("data", "")))
        if not isinstance(spe, (int, float)) or not m or summary.get("feature_seconds"):
            continue
        if cfg.get("kind") == "fewshot":
            continue
        n = int(m.group(1).replace(",", ""))
        if n > 0 and spe > 0:
            out.setdefault(_key(cfg), []).append(spe / n)
    return out


def measured_overheads(
    finished: list[tuple[dict, dict]],
) -> dict[tuple[str, str, int], list[float]]:
    """Seconds each (kind, model, size) spent outside its epochs (start-up, the test, what is
    saved at the end), from finished runs whose summaries carry `run_seconds` (start to end):
    that less their epochs at their median epoch time."""
    out: dict[tuple[str, str, int], list[float]] = {}
    for cfg, summary in finished:
        whole, spe = _number(summary.get("run_seconds")), _number(summary.get("seconds_per_epoch"))
        epochs = summary.get("epochs_done")
        if whole is None or spe is None or not isinstance(epochs, int) or epochs < 1:
            continue
        out.setdefault(_key(cfg), []).append(max(whole - epochs * spe, 0.0))
    return out


def _same_settings(cfg: RunConfig, finished: list[tuple[dict, dict]]) -> Estimate | None:
    """The median whole time of the runs that finished here with `cfg`'s settings."""
    mine = recipe(cfg.to_dict())
    found = [(whole, _number(s.get("seconds_per_epoch"))) for c, s in finished
             if (whole := _number(s.get("run_seconds"))) and recipe(c) == mine]  # fmt: skip
    if not found:
        return None
    seconds = statistics.median(w for w, _ in found)
    per_epoch = [spe for _, spe in found if spe] or [seconds / max(cfg.epochs, 1)]
    n = len(found)
    return Estimate(seconds, statistics.median(per_epoch), cfg.epochs,
                    f"{n} finished run{'s' if n > 1 else ''} of these settings here",
                    here=True)  # fmt: skip


def estimate(cfg: RunConfig, finished: list[tuple[dict, dict]] = ()) -> Estimate | None:
    """The run's time here (see the module's docstring); None when neither this machine's
    runs nor the reference know its model, or its training images are not known."""
    finished = list(finished)
    if same := _same_settings(cfg, finished):
        return same
    if cfg.kind == "fewshot":
        pixels = (cfg.data.image_size / 84) ** 2
        per_epoch = (cfg.episodes_per_epoch + cfg.val_episodes) * FEWSHOT_EPISODE * pixels
        test = cfg.test_episodes * len(cfg.test_shots) * FEWSHOT_TEST_EPISODE * pixels
        return Estimate(STARTUP + FEWSHOT_FIXED + per_epoch * cfg.epochs + test, per_epoch,
                        cfg.epochs,
                        "the reference: Conv-4 episodes, and the test episodes")  # fmt: skip
    if cfg.kind == "transfer" and getattr(cfg, "features_once", False):
        return Estimate(STARTUP + FEATURES_EPOCH * cfg.epochs, FEATURES_EPOCH, cfg.epochs,
                        "a head on features computed once")  # fmt: skip
    n = train_images(cfg)
    if n is None:
        return None
    kind, model, size = cfg.kind, cfg.model.name, cfg.data.image_size
    costs = measured_costs(finished)
    overheads = measured_overheads(finished).get((kind, model, size))
    startup = statistics.median(overheads) if overheads else STARTUP
    same = costs.get((kind, model, size))
    if same:
        per_image = statistics.median(same)
        basis = (
            f"{len(same)} finished run{'s' if len(same) > 1 else ''} of {model} at {size} px here"
        )
    elif other := [(s, c) for (k, m, s), c in costs.items() if (k, m) == (kind, model)]:
        s, c = min(other, key=lambda sc: abs(sc[0] - size))
        per_image = statistics.median(c) * (size / s) ** 2
        basis = f"runs of {model} at {s} px here, scaled to {size} px"
    elif (kind, model) in REFERENCE:
        ref = 128 if kind == "segment" else REF_SIZE
        per_image = REFERENCE[(kind, model)] * (size / ref) ** 2
        basis = f"the reference for {model}"
    else:
        return None
    per_epoch = per_image * n
    return Estimate(startup + per_epoch * cfg.epochs, per_epoch, cfg.epochs, basis,
                    here=bool(same))  # fmt: skip


def finished_here(runs_dir) -> list[tuple[dict, dict]]:
    """(config, summary) of every finished run in the folder, the summary with the run's whole
    time (`run_seconds`, start to end): what estimates learn from."""
    from engine.store import runs

    return [(r.config or {}, {**(r.status.get("summary") or {}), **_whole(r.status)})
            for r in runs.list_runs(runs_dir) if r.state == "finished" and r.config]  # fmt: skip


def _whole(status: dict) -> dict:
    started, ended = _number(status.get("started")), _number(status.get("ended"))
    return {"run_seconds": ended - started} if started and ended and ended > started else {}


def combined(configs: list[RunConfig], finished: list[tuple[dict, dict]] = ()) -> Estimate | None:
    """The configs' estimates added up (a comparison's rows run one after another), learned
    here only when every one is; None when any has no estimate."""
    found = [estimate(c, finished) for c in configs]
    if not found or any(e is None for e in found):
        return None
    if len(found) == 1:
        return found[0]
    total = sum(e.seconds for e in found)
    return Estimate(total, total / len(found), len(found), found[0].basis,
                    all(e.here for e in found))  # fmt: skip


def remaining(epoch_seconds: list[float], epochs_done: int, epochs: int) -> float | None:
    """Seconds left for a running run: the epochs left at the mean of the epochs done."""
    if not epoch_seconds or epochs_done >= epochs:
        return None
    return (epochs - epochs_done) * sum(epoch_seconds) / len(epoch_seconds)
