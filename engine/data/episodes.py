"""Few-shot episodes: N-way K-shot Q-query tasks drawn from a labelled image set.

Episode `i` of a sampler is a pure function of (seed, i): evaluation episodes are the same
every time, and a resumed training epoch replays the episodes it would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.data.datasets import DataError, ImageSet, Splits
from engine.data.fewshot_lists import check_lists, load_lists, read_episode_csv
from engine.data.loader import Normaliser, _generator
from engine.models.protonet import Episode


@dataclass(frozen=True)
class EpisodeIndex:
    """Positions in the image set: support (N*K, class-major) and query (N*Q, class-major);
    `classes` are the dataset labels behind episode labels 0..N-1."""

    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray
    query_labels: np.ndarray | None = None  # None: class-major, Q per class (sampled)


class FixedEpisodes:
    """A sampler-like list of given episodes (an episode file's), N-way K-shot each."""

    def __init__(self, episodes: list[EpisodeIndex]) -> None:
        self.episodes = episodes
        self.n_way = len(episodes[0].classes)
        self.k_shot = len(episodes[0].support) // self.n_way
        self.q_query = len(episodes[0].query) // self.n_way

    def episode(self, i: int) -> EpisodeIndex:
        return self.episodes[i]


class EpisodeSampler:
    def __init__(self, labels, n_way: int, k_shot: int, q_query: int, seed: int = 0,
                 class_names: list[str] | None = None, source: str = "the dataset"):  # fmt: skip
        labels = np.asarray(labels)
        self.n_way, self.k_shot, self.q_query, self.seed = n_way, k_shot, q_query, seed
        self.by_class = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
        names = class_names or [str(c) for c in range(int(labels.max()) + 1)]
        if n_way > len(self.by_class):
            raise DataError(
                f"{n_way}-way episodes need {n_way} classes; {source} has {len(self.by_class)}"
            )
        need = k_shot + q_query
        short = [(names[c], len(ix)) for c, ix in self.by_class.items() if len(ix) < need]
        if short:
            listed = ", ".join(f"{name!r} has {n}" for name, n in short[:5])
            raise DataError(
                f"{k_shot}-shot {q_query}-query episodes need {need} images per class; in "
                f"{source}, class {listed}"
            )
        self.classes = np.array(sorted(self.by_class))

    def episode(self, i: int) -> EpisodeIndex:
        g = _generator(self.seed, i, 7)
        pick = self.classes[torch.randperm(len(self.classes), generator=g)[: self.n_way].numpy()]
        support, query = [], []
        for c in pick:
            members = self.by_class[int(c)]
            order = members[torch.randperm(len(members), generator=g).numpy()]
            support.append(order[: self.k_shot])
            query.append(order[self.k_shot : self.k_shot + self.q_query])
        return EpisodeIndex(pick, np.concatenate(support), np.concatenate(query))


class EpisodeLoader:
    """What the Trainer iterates: (Episode, query labels 0..N-1, query positions) per episode;
    `episodes` per epoch. Images are normalised on the device, as BatchLoader does."""

    def __init__(self, data: ImageSet, sampler: EpisodeSampler, episodes: int, mean, std,
                 device: torch.device | str = "cpu", fixed: bool = False, embed=None):  # fmt: skip
        """`embed` (evaluation): a function images -> embeddings. Each pass then embeds every
        image once and draws the episodes from that table: 600 episodes cost one pass
        over the images instead of 600 x N x (K + Q) forward passes. Valid because in eval
        mode an image's embedding does not depend on the episode it is in."""
        self.device = torch.device(device)
        self.embed = embed
        self.images = data.images.to(self.device)
        self.sampler, self.episodes, self.fixed = sampler, episodes, fixed
        self._normaliser = Normaliser(mean, std, self.device)
        self.mean, self.std = self._normaliser.mean, self._normaliser.std

    def __len__(self) -> int:
        return self.episodes

    def normalise(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return self._normaliser(images_uint8)

    @property
    def num_samples(self) -> int:
        return self.episodes * self.sampler.n_way * self.sampler.q_query

    def get(self, number: int, table: torch.Tensor | None = None):
        """Episode `number` (images; or rows of `table`, embeddings of every image)."""
        ix = self.sampler.episode(number)
        s = self.sampler
        support = torch.as_tensor(ix.support, device=self.device)
        query = torch.as_tensor(ix.query, device=self.device)

        def take(rows):
            return table[rows] if table is not None else self.normalise(self.images[rows])

        episode = Episode(
            take(support),
            torch.arange(s.n_way, device=self.device).repeat_interleave(s.k_shot),
            take(query),
            embedded=table is not None,
        )
        if ix.query_labels is not None:
            labels = torch.as_tensor(ix.query_labels, device=self.device)
        else:
            labels = torch.arange(s.n_way, device=self.device).repeat_interleave(s.q_query)
        return episode, labels, ix

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple]:
        # Training: new episodes every epoch; evaluation (`fixed`): the same ones every time.
        base = 0 if self.fixed else epoch * self.episodes
        table = None
        if self.embed is not None:
            with torch.no_grad():
                table = torch.cat([self.embed(self.normalise(chunk))
                                   for chunk in self.images.split(256)])  # fmt: skip
        for b in range(start, self.episodes):
            episode, labels, ix = self.get(base + b, table)
            yield episode, labels, torch.as_tensor(ix.query)

    def __iter__(self):
        return self.batches()


def mean_and_ci95(accuracies) -> tuple[float, float]:
    """Mean accuracy over episodes and the half-width of its 95% confidence interval,
    1.96 x std / sqrt(n), as the seed reports (e.g. 44.50 ± 0.90 %)."""
    a = np.asarray(accuracies, dtype=np.float64)
    if len(a) == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(1.96 * a.std() / math.sqrt(len(a)))


DIGITS_META_TEST = [str(c) for c in range(5, 10)]


def episodes_from_csv(path: str | Path, splits: Splits) -> list[EpisodeIndex]:
    """The fixed test episodes of an episode file, as positions in `splits.test`; each
    query's episode label is its class's place among the episode's support classes."""
    if splits.names is None:
        raise DataError(f"{path}: episode files name images, so the data must be image lists "
                        "(train.csv / val.csv)")  # fmt: skip
    ids = splits.test.ids.tolist()
    position = {splits.names[i]: p for p, i in enumerate(ids)}
    out = []
    for ep in read_episode_csv(path, [splits.names[i] for i in ids]):
        support = [[position[f] for f in files] for files in ep["support"]]
        labels = splits.test.labels.numpy()
        classes = np.array([labels[s[0]] for s in support])
        query = np.array([position[f] for f in ep["query"]])
        if not np.isin(labels[query], classes).all():
            raise DataError(
                f"{path}, episode {ep['id']}: a query is of none of its support classes"
            )
        query_labels = np.array([int(np.flatnonzero(classes == c)[0]) for c in labels[query]])
        out.append(EpisodeIndex(classes, np.concatenate(support), query, query_labels))
    return out


def check_fewshot_source(name: str, path: str | None, episodes_csv: str | None = None) -> None:
    """The checks before a few-shot run starts: the folders or image lists exist, every image
    is whole and in bounds, the meta-train and meta-test classes are disjoint (the image
    folders of classification want the opposite), and the episode file, if given, names
    images of the meta-test list."""
    from engine.data.checks import check_images
    from engine.data.sources import _existing_dir, image_folder_files

    if name == "digits":
        return
    if not path:
        raise DataError(f"the {name!r} dataset needs a folder path")
    root = _existing_dir(path)
    if name == "csv" or (root / "train.csv").is_file():
        check_lists(root, episodes_csv)
        return
    seen: dict[str, str] = {}
    files = []
    for folder in _split_folders(root).values():
        paths, _, classes = image_folder_files(folder)
        for c in classes:
            if c in seen:
                raise DataError(f"class {c!r} is in both {seen[c]}/ and {folder.name}/ of "
                                f"{root}; few-shot splits must have disjoint classes")  # fmt: skip
            seen[c] = folder.name
        files += paths
    check_images(files, root)


def _split_folders(root: Path) -> dict[str, Path]:
    """train/ and test/ (or val/) of a few-shot dataset; with both val/ and test/, val/ holds
    the validation classes."""
    test_dir = root / "test" if (root / "test").is_dir() else root / "val"
    if not (root / "train").is_dir() or not test_dir.is_dir():
        raise DataError(
            f"{root} must hold train/<class>/ (meta-train classes) and test/<class>/ or "
            "val/<class>/ (meta-test classes), as mini-ImageNet"
        )
    folders = {"train": root / "train", "test": test_dir}
    if test_dir.name == "test" and (root / "val").is_dir():
        folders["val"] = root / "val"
    return folders


def load_fewshot(cfg) -> Splits:
    """Splits for few-shot learning (labels index `classes`): train = meta-train classes,
    val = validation episodes' images, test = the meta-test classes, never trained on.

    digits: meta-test classes `cfg.meta_test_classes` (default 5-9); val = a held-out
    stratified part of the meta-train classes' images. folder: `train/<class>/` and
    `test/<class>/` (or `val/<class>/`) with disjoint classes; with both `val/` and
    `test/`, val/ holds the validation classes, as mini-ImageNet's 64 / 16 / 20 split.
    """
    from engine.data.datasets import _split
    from engine.data.sources import _existing_dir, read_digits, read_image_folder

    size, d = cfg.data.image_size, cfg.data
    if d.name == "digits":
        x, y, classes = read_digits(size)
        test_names = cfg.meta_test_classes or DIGITS_META_TEST
        unknown = sorted(set(test_names) - set(classes))
        if unknown:
            raise DataError(f"meta_test_classes {unknown} are not digit classes (0-9)")
        is_test = torch.tensor([classes[int(c)] in test_names for c in y])
        full = ImageSet(x, y, torch.arange(len(y)))
        train, test = (
            full.subset(torch.nonzero(~is_test).flatten()),
            full.subset(torch.nonzero(is_test).flatten()),
        )
        rest, held = _split(
            np.arange(len(train)), train.labels.numpy(), d.val_fraction, d.split_seed
        )
        source = (f"digits (scikit-learn): meta-train classes "
                  f"{', '.join(c for c in classes if c not in test_names)}, meta-test {', '.join(test_names)}")  # fmt: skip
        return Splits(train.subset(rest), train.subset(held), test, classes, source)
    root = _existing_dir(d.path)
    if d.name == "csv" or (root / "train.csv").is_file():
        return load_lists(root, size, d.val_fraction, d.split_seed)
    parts, classes = {}, []
    folders = _split_folders(root)
    n = 0
    for name, folder in folders.items():
        x, y, names = read_image_folder(folder, size, within=root)
        clash = sorted(set(names) & set(classes))
        if clash:
            raise DataError(f"{folder} repeats classes of another split: {', '.join(clash[:5])}; "
                            "few-shot splits must have disjoint classes")  # fmt: skip
        parts[name] = ImageSet(x, y + len(classes), torch.arange(n, n + len(y)))
        classes += names
        n += len(y)
    if "val" not in parts:
        train = parts["train"]
        rest, held = _split(
            np.arange(len(train)), train.labels.numpy(), d.val_fraction, d.split_seed
        )
        parts["train"], parts["val"] = train.subset(rest), train.subset(held)
    source = f"few-shot folders {root} ({', '.join(f'{k}/' for k in folders)})"
    return Splits(parts["train"], parts["val"], parts["test"], classes, source)
