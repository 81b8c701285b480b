"""Quick demos: one click per experiment, each sized to finish in about a minute on 2 CPU
cores and to show something worth seeing. Home's gallery and every page's empty state start
them; `bench/quick_demos.py` measures each one's time on this machine (QUICK_SECONDS).

A demo clicked twice starts one run (the second click finds the first still queued or
running); a demo started while other runs train queues behind them rather than fighting them
for the cores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.config import (
    DataConfig,
    DynamicFilterConfig,
    FewShotConfig,
    RunConfig,
    SegmentConfig,
    SSLConfig,
    TransferConfig,
)
from engine.execution.start import start_group, start_run
from engine.store import groups, runs

PREFIX = "quick: "  # the name of a quick demo's run or group: how a second click finds it


@dataclass(frozen=True)
class QuickDemo:
    key: str
    title: str  # the card's title
    shows: str  # one sentence: what it shows
    course: str  # the assignment it comes from, by its real name
    page: str  # the page that watches it (dashboard/views/<page>.py)
    kind: str  # the experiment kind whose runs the page shows
    seconds: int  # click to finished on 2 CPU cores, alone (bench/quick_demos.py: two runs' mean)
    config: Callable[[], RunConfig]
    preset: str | None = None  # a comparison instead of one run
    options: dict = field(default_factory=dict)  # start_group's options

    @property
    def name(self) -> str:
        return PREFIX + self.title

    def configs(self) -> list[RunConfig]:
        """The runs a click starts: the one config, or the comparison's rows."""
        from engine.experiments.presets import preset_configs

        cfg = self.config()
        if self.preset is None:
            return [cfg]
        return [c for _, c, _ in preset_configs(self.preset, cfg, **self.options) if c]


def demo_config() -> RunConfig:
    """What Home's "Start the demo" trains: small_cnn on the digits at 16 x 16 (the digits
    are 8 x 8 images: 16 px loses nothing that 32 px has, and an epoch takes a third of the
    time), 16 epochs. Measured (3 seeds, in-process, one thread): 3.7-4.0 s of training and
    98.5-99.3% test accuracy, against 8.4-11.9 s and 97.8-98.5% for 12 epochs at 32 px."""
    return RunConfig(name="demo", data=DataConfig(image_size=16), epochs=16)


def _classify() -> RunConfig:
    return replace(demo_config(), name="", snapshot_every=1)  # the Home demo, every epoch seen


def _fewshot() -> FewShotConfig:
    """One epoch of 30 episodes at 56 px (the digits are 8 x 8): 1-shot 67.1 +- 1.5%, 5-shot
    84.1 +- 0.9% over 100 test episodes in 34 s, against 66.3 +- 1.8% and 84.7 +- 0.9% in 84 s
    at the assignment's 84 px (one seed each, in-process, one thread): within noise."""
    return FewShotConfig(epochs=1, episodes_per_epoch=30, test_episodes=100, val_episodes=10,
                         test_shots=[1, 5], data=DataConfig(image_size=56))  # fmt: skip


QUICK: dict[str, QuickDemo] = {
    d.key: d
    for d in [
        QuickDemo("train", "Training and embeddings",
                  "Live loss and accuracy, and the penultimate layer's embeddings at every "
                  "epoch as PCA / t-SNE / UMAP: the digits' clusters separating.",
                  "DLCV HW1 problem 1 (t-SNE across epochs)", "train", "classify", 8,
                  _classify),
        QuickDemo("transfer", "Transfer-learning modes",
                  "The same ImageNet backbone fine-tuned, frozen and from scratch, beside a "
                  "random-init frozen control: curves overlaid, accuracy with intervals.",
                  "the NTHU transfer-learning homework", "transfer", "transfer", 44,
                  lambda: TransferConfig(data=DataConfig(image_size=32, class_counts=[50] * 10),
                                         epochs=3),
                  preset="finetune-vs-frozen"),
        QuickDemo("inside", "Inside the network",
                  "Filters, feature maps, DeepDream and activation maximisation, and Captum "
                  "attributions of a network trained a few seconds ago.",
                  "the Tsinghua DL HW2, task A", "inside", "classify", 8, _classify),
        QuickDemo("dynamic", "Dynamic filters",
                  "Each class's generated 1x1 filter and its response map over an image, "
                  "against static filters.",
                  "ENGN8536 Lab 4", "dynamic", "dynamic_filter", 18,
                  lambda: DynamicFilterConfig(epochs=3), preset="dynamic-vs-static",
                  options={"include_frozen": False}),
        QuickDemo("segmentation", "Land-cover segmentation",
                  "Predicted masks of satellite scenes getting better epoch by epoch, and "
                  "mean IoU per class.",
                  "DLCV HW1 problem 3", "segmentation", "segment", 32,
                  lambda: SegmentConfig(data=DataConfig(name="landcover", image_size=64),
                                        epochs=5)),
        QuickDemo("fewshot", "Few-shot episodes",
                  "A prototypical network classifying classes it never saw from one or five "
                  "examples: the episode viewer's right and wrong queries.",
                  "DLCV HW4 problem 1", "fewshot", "fewshot", 36,
                  _fewshot),
        QuickDemo("ssl", "Self-supervised pretraining",
                  "BYOL learning without labels, watched by the kNN accuracy of its features "
                  "against a random-init backbone, and by its collapse measure.",
                  "DLCV HW1 and HW4, problem 2", "ssl", "ssl", 51,
                  lambda: SSLConfig(epochs=2, hidden_dim=512)),
        QuickDemo("architecture", "Architecture lab and ablation",
                  "Augmentation x learning-rate schedule x optimiser, eight runs of one model "
                  "compared with intervals.",
                  "the Tsinghua DL HW2, task B", "transfer", "classify", 57,
                  lambda: RunConfig(epochs=4), preset="ablation"),
        QuickDemo("longtail", "Long-tailed training",
                  "Cross-entropy against Balanced Softmax and class weighting on a long-tailed "
                  "split: the rare classes' accuracy.",
                  "the Tsinghua DL HW2, task C", "longtail", "classify", 20,
                  lambda: RunConfig(epochs=12, data=DataConfig(imbalance_ratio=50)),
                  preset="long-tail"),
    ]
}  # fmt: skip


@dataclass
class Started:
    """What a click did: the run or group it started (or found running), and what it waits for."""

    demo: QuickDemo
    run_dir: Path | None = None
    group_id: str | None = None
    already: bool = False  # a second click: the first one's run, still queued or running
    queued_behind: list[str] = field(default_factory=list)

    def message(self, seconds: float | None = None) -> str:
        """What the click did; `seconds`: the demo's time here (the card's), else the time
        measured for it on the project's machine."""
        what = self.group_id or (self.run_dir.name if self.run_dir else "")
        if self.already:
            return f"{self.demo.title}: already started ({what}); watching it"
        if self.queued_behind:
            n = len(self.queued_behind)
            return (f"{self.demo.title}: queued behind {n} training run{'s' if n > 1 else ''} "
                    f"({', '.join(self.queued_behind[:3])}); it starts when they end")  # fmt: skip
        return (f"{self.demo.title}: started ({what}), about "
                f"{round(seconds if seconds is not None else self.demo.seconds)} s here")  # fmt: skip


def _active(runs_dir: str | Path | None) -> list[runs.RunSummary]:
    return [r for r in runs.list_runs(runs_dir) if r.state in ("queued", "running")
            and runs.is_active(r.path)]  # fmt: skip


def start_quick(key: str, runs_dir: str | Path | None = None) -> Started:
    """Start the quick demo `key` (or find it already started), queued behind other active
    runs; see `Started`."""
    demo = QUICK[key]
    active = _active(runs_dir)
    for r in active:  # a second click: the first click's run or group is still going
        if _started_by(demo, r, runs_dir):
            return Started(demo, r.path, (r.config or {}).get("group"), already=True)
    behind = [r.run_id for r in active]
    cfg = demo.config()
    if demo.preset is None:
        cfg.name = demo.name
        return Started(demo, start_run(cfg, runs_dir, after=behind), queued_behind=behind)
    # The group carries the demo's name; its runs keep their rows' names.
    group = start_group(demo.preset, cfg, runs_dir, name=demo.name, after=behind,
                        **demo.options)  # fmt: skip
    return Started(demo, None, group.group_id, queued_behind=behind)


def _started_by(demo: QuickDemo, r: runs.RunSummary, runs_dir) -> bool:
    cfg = r.config or {}
    if demo.preset is None:
        return cfg.get("name") == demo.name
    try:
        return (
            bool(cfg.get("group")) and groups.load_group(cfg["group"], runs_dir).name == demo.name
        )
    except runs.RunError:  # a damaged manifest: not this demo's
        return False


def latest_group(demo: QuickDemo, runs_dir: str | Path | None = None) -> groups.Group | None:
    """The newest comparison group of the demo's preset, if any."""
    found = [g for g in groups.list_groups(runs_dir)
             if isinstance(g, groups.Group) and g.preset == demo.preset]  # fmt: skip
    return found[0] if found else None
