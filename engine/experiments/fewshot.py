"""Few-shot learning with prototypical networks (DLCV HW4 problem 1) on the common path.

Training: one episode per Trainer step (default 10-way 1-shot, 15 queries per class, as the
seed; capped at the number of meta-train classes). best.pt: the accuracy on fixed
validation episodes. Test: 600 fixed episodes of the unseen meta-test classes, 5-way, for
each K in `test_shots`: mean accuracy ± 95% confidence interval, and the seconds they took.
Snapshots: embeddings of meta-test images, for the Embeddings page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.config import FewShotConfig
from engine.core.atomic import save_npz
from engine.data import ImageSet, Splits
from engine.data.episodes import (
    EpisodeLoader,
    EpisodeSampler,
    FixedEpisodes,
    episodes_from_csv,
    load_fewshot,
)
from engine.experiments.fit import Prepared, fit, parameter_counts
from engine.models.protonet import Episode, PrototypicalNetwork
from engine.store.events import EventLog
from engine.store.layout import RunLayout
from engine.store.outcomes import Outcomes
from engine.train import Trainer, build_optimizer
from engine.train.tasks import Episodic, EvalResult
from engine.train.trainer import eval_mode

EVAL_SEED = 1_000  # evaluation episodes: their own seeds, fixed for every run of a dataset


def evaluation_loader(cfg: FewShotConfig, splits: Splits, shots: int, mean, std, device,
                embed=None) -> EpisodeLoader:  # fmt: skip
    """The fixed test episodes for K = `shots`: the same for every run on this data."""
    sampler = EpisodeSampler(
        splits.test.labels, cfg.test_way, shots, cfg.test_query, seed=EVAL_SEED + shots,
        class_names=splits.classes, source="the meta-test set",
    )  # fmt: skip
    return EpisodeLoader(splits.test, sampler, cfg.test_episodes, mean, std, device, fixed=True,
                         embed=embed)  # fmt: skip


class EmbeddingSnapshots:
    """Epoch hook: embeddings of up to `size` meta-test images (predictions: the nearest class
    mean among them), in the Embeddings page's format."""

    def __init__(
        self, layout: RunLayout, test: ImageSet, loader: EpisodeLoader, size, seed, epochs
    ):
        pick = np.sort(np.random.default_rng(seed).permutation(len(test))[:size])
        self.data = test.subset(pick)
        self.layout, self.loader, self.epochs = layout, loader, set(epochs)

    @torch.inference_mode()
    def __call__(self, trainer: Trainer, epoch: int, val: EvalResult) -> None:
        if epoch not in self.epochs:
            return
        images = self.loader.normalise(self.data.images.to(self.loader.device))
        with eval_mode(trainer.model) as model:
            z = torch.cat([model.embed(chunk) for chunk in images.split(256)]).float().cpu()
        labels = self.data.labels
        classes, inverse = labels.unique(return_inverse=True)
        means = torch.stack([z[inverse == i].mean(0) for i in range(len(classes))])
        nearest = classes[torch.cdist(z, means).argmin(1)]
        save_npz(
            self.layout.embedding_file(epoch), features=z.numpy().astype(np.float32),
            labels=labels.numpy().astype(np.int64), predictions=nearest.numpy().astype(np.int64),
            sample_ids=self.data.ids.numpy().astype(np.int64),
        )  # fmt: skip


def prepare(cfg: FewShotConfig, splits: Splits, device: torch.device) -> Prepared:
    model = PrototypicalNetwork(cfg.distance, cfg.mlp_head, cfg.data.image_size,
                                cfg.cosine_scale).to(device)  # fmt: skip
    optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.epochs)
    mean, std = splits.channel_stats()
    train_classes = len(splits.train.labels.unique())
    way = min(cfg.train_way, train_classes)
    if way < cfg.train_way:
        print(f"{cfg.train_way}-way training asked; the meta-train classes are {train_classes}: "
              f"training {way}-way", flush=True)  # fmt: skip

    for shots in cfg.test_shots:  # a test that cannot be drawn fails now, not after training
        evaluation_loader(cfg, splits, shots, mean, std, device)
    given = episodes_from_csv(cfg.episodes_csv, splits) if cfg.episodes_csv else []

    def loader(data: ImageSet, shuffle: bool = False, augment: bool = False) -> EpisodeLoader:
        if shuffle:  # the training episodes: new ones every epoch
            sampler = EpisodeSampler(data.labels, way, cfg.train_shot, cfg.train_query,
                                     seed=cfg.seed, class_names=splits.classes,
                                     source="the meta-train set")  # fmt: skip
            return EpisodeLoader(data, sampler, cfg.episodes_per_epoch, mean, std, device)
        val_way = min(cfg.test_way, len(data.labels.unique()))
        sampler = EpisodeSampler(data.labels, val_way, cfg.train_shot, cfg.test_query,
                                 seed=EVAL_SEED, class_names=splits.classes,
                                 source="the validation set")  # fmt: skip
        return EpisodeLoader(data, sampler, cfg.val_episodes, mean, std, device, fixed=True,
                             embed=model.embed)  # fmt: skip

    def snapshots(layout: RunLayout, splits: Splits, epochs: list[int]) -> EmbeddingSnapshots:
        return EmbeddingSnapshots(layout, splits.test, loader(splits.val), cfg.snapshot_size,
                                  cfg.seed, epochs)  # fmt: skip

    def test(trainer: Trainer, splits: Splits, events: EventLog) -> dict:
        out, step, epoch = {}, trainer.state.global_step, trainer.state.epoch
        per_episode = {}
        for shots in cfg.test_shots:
            started = time.perf_counter()
            r = trainer.evaluate(
                evaluation_loader(cfg, splits, shots, mean, std, device, model.embed)
            )
            seconds = time.perf_counter() - started
            ci = r.metrics["acc_ci95"]
            for name, value in ((f"acc_{shots}shot", r.acc), (f"ci95_{shots}shot", ci),
                                (f"eval_seconds_{shots}shot", seconds)):  # fmt: skip
                events.emit(name, value, split="test", epoch=epoch, step=step)
            out[f"test_{shots}shot"] = {"acc": r.acc, "ci95": ci, "seconds": seconds}
            per_episode[shots] = r.per_item["episode_acc"]
        if given:  # the episode file's episodes too
            started = time.perf_counter()
            loader = EpisodeLoader(splits.test, FixedEpisodes(given), len(given), mean, std,
                                   device, fixed=True, embed=model.embed)  # fmt: skip
            r = trainer.evaluate(loader)
            seconds = time.perf_counter() - started
            ci = r.metrics["acc_ci95"]
            for name, value in (("acc_csv", r.acc), ("ci95_csv", ci)):
                events.emit(name, value, split="test", epoch=epoch, step=step)
            out["test_csv"] = {"acc": r.acc, "ci95": ci, "seconds": seconds,
                               "episodes": len(given), "file": cfg.episodes_csv}  # fmt: skip
        first = cfg.train_shot if cfg.train_shot in cfg.test_shots else cfg.test_shots[0]
        out["outcomes"] = Outcomes("episodes", shots=first,
                                   episode_acc=per_episode[first].tolist())  # fmt: skip
        out["test_acc"] = out[f"test_{first}shot"]["acc"]
        out["test_ci95"] = out[f"test_{first}shot"]["ci95"]
        return out

    info = {
        "model": "protonet", "distance": cfg.distance, "mlp_head": cfg.mlp_head,
        "train_way": way, "label": cfg.label, **parameter_counts(model),
    }  # fmt: skip
    return Prepared(
        model, optimizer, scheduler, loader, extra_state={"mean": mean, "std": std},
        info=info, task=Episodic(), snapshots=snapshots, test=test,
    )  # fmt: skip


def run(cfg: FewShotConfig, run_dir: str | Path, **kw) -> dict:
    return fit(cfg, run_dir, prepare, load=load_fewshot, **kw)


@dataclass
class EpisodeLook:
    """Everything the episode viewer draws, computed once (numpy, on the CPU)."""

    logits: np.ndarray  # (N*Q, N)
    predictions: np.ndarray  # (N*Q,) episode labels
    support: np.ndarray  # (N*K, D) embeddings
    prototypes: np.ndarray  # (N, D)
    query: np.ndarray  # (N*Q, D)
    support_labels: np.ndarray  # (N*K,)


@torch.no_grad()
def look_at_episode(model: PrototypicalNetwork, episode: Episode) -> EpisodeLook:
    """Embed an episode with a trained network (eval mode) and classify its queries."""
    with eval_mode(model):
        z = torch.cat([episode.support, episode.query])
        z = z if episode.embedded else model.embed(z)
        zs, zq = z[: len(episode.support)], z[len(episode.support) :]
        model.set_prototypes(zs, episode.support_labels)
        logits = model.scores(zq, model.prototypes)
    return EpisodeLook(
        logits.cpu().numpy(), logits.argmax(1).cpu().numpy(), zs.cpu().numpy(),
        model.prototypes.cpu().numpy(), zq.cpu().numpy(), episode.support_labels.cpu().numpy(),
    )  # fmt: skip


def episode_from_images(support: list[list[torch.Tensor]], query: list[torch.Tensor],
                        size: int, mean, std) -> Episode:  # fmt: skip
    """An episode from a person's images: `support[c]` the (C, H, W) uint8 images of class c,
    `query` any images; each centre-cropped and resized to `size`, then normalised."""
    from engine.data.images import preprocess

    def prepared(images):
        x = torch.stack([preprocess(im, size) for im in images])
        return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)

    labels = torch.cat([torch.full((len(ims),), c) for c, ims in enumerate(support)])
    return Episode(prepared([im for ims in support for im in ims]), labels, prepared(query))


def inspection_model(cfg: FewShotConfig, num_classes: int) -> torch.nn.Module:
    """The untrained protonet a few-shot run's checkpoints load into (class-free)."""
    return PrototypicalNetwork(cfg.distance, cfg.mlp_head, cfg.data.image_size, cfg.cosine_scale)


def check_data(cfg: FewShotConfig) -> None:
    """The class folders (or the digits) and, when given, the episode file."""
    from engine.data.episodes import check_fewshot_source

    check_fewshot_source(cfg.data.name, cfg.data.path, cfg.episodes_csv)
