"""KINDS: the one table of experiment kinds. Everything that differs by kind and is not the
config's own business (its dataclass, in engine.config) is a field here or a function of the
kind's module, so adding a kind is one module in engine/experiments/ and its row below.

A kind's module provides `run(cfg, run_dir, **kw) -> summary`, and, when its model can be
looked at image by image (the Confusion, Inside and per-kind pages), `inspection_model(cfg,
num_classes) -> nn.Module`, the untrained network its checkpoints load into.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from types import ModuleType

from engine.config import CONFIG_KINDS, ConfigError, RunConfig


@dataclass(frozen=True)
class Kind:
    name: str  # config.json's "kind"
    title: str  # how its users know it
    module: str  # engine.experiments.<module>
    classifies_images: bool  # one image in, class scores out: Confusion and Inside offer it
    inspectable: bool  # its module has inspection_model(): load_run_model rebuilds its net
    distributed: bool  # trains under several processes (torchrun, DDP)
    presets: tuple[str, ...] = ()  # the comparisons (engine.experiments.presets) of this kind

    @property
    def config(self) -> type[RunConfig]:
        return CONFIG_KINDS[self.name]

    def check_data(self, cfg: RunConfig) -> None:
        """Its data checked whole before a run folder is made (DataError naming the file):
        the kind module's own check_data when it has one, else the dataset's reader."""
        module = self.experiment()
        if hasattr(module, "check_data"):
            module.check_data(cfg)
            return
        from engine.data import check_source

        data = cfg.data
        check_source(data.name, data.path, data.classes, data.class_counts)

    def experiment(self) -> ModuleType:
        """Its module, imported on first use (it imports torch)."""
        return import_module(f"engine.experiments.{self.module}")


KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        # name, title, module, classifies_images, inspectable, distributed, presets
        Kind("classify", "Image classification", "classify", True, True, True,
             ("long-tail", "ablation")),
        Kind("transfer", "Transfer learning", "transfer", True, True, True,
             ("finetune-vs-frozen", "seed003", "a-e")),
        Kind("dynamic_filter", "Dynamic filters", "dynamic_filter", True, True, False,
             ("dynamic-vs-static",)),
        Kind("segment", "Semantic segmentation", "segment", False, False, False,
             ("fcn32s-vs-improved",)),
        # The few-shot page looks at a protonet's episodes: inspectable, not image by image.
        Kind("fewshot", "Few-shot learning (prototypical networks)", "fewshot", False, True,
             False, ("fewshot-grid",)),
        Kind("ssl", "Self-supervised pretraining (BYOL)", "ssl", False, False, False),
    ]
}  # fmt: skip


def get_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise ConfigError(f"unknown experiment kind {kind!r}; choose one of {', '.join(KINDS)}")
    return KINDS[kind]


def get_experiment(kind: str) -> Callable[..., dict]:
    """The `run` function of a kind."""
    return get_kind(kind).experiment().run


def preset_kind(preset: str) -> str:
    """The kind of the runs a comparison preset makes."""
    for k in KINDS.values():
        if preset in k.presets:
            return k.name
    raise ConfigError(f"unknown preset {preset!r}")


def check_processes(kind: str, processes: int) -> None:
    """Several processes only for kinds that train under DDP: plain supervised classification
    through BatchLoader batches. The others (episodes, BYOL's moving target, per-pixel
    losses) would need their own thought."""
    able = [k.name for k in KINDS.values() if k.distributed]
    if processes > 1 and kind not in able:
        raise ConfigError(
            f"{kind} runs train in one process; several processes (--nproc, torchrun) "
            f"are for {' and '.join(able)} runs"
        )
