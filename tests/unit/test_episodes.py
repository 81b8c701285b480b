"""Few-shot episodes: the N-way K-shot sampler, the loader the Trainer iterates, the 95%
confidence interval, fixed episode lists from a CSV, and the meta-train / meta-test splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import DataConfig, FewShotConfig
from engine.data import DataError, ImageSet
from engine.data.episodes import (
    EpisodeLoader,
    EpisodeSampler,
    load_fewshot,
    mean_and_ci95,
    read_episode_csv,
)
from engine.models.protonet import PrototypicalNetwork

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]

# 6 classes of uneven size (class c has 8 + c images), interleaved as a real dataset would be.
LABELS = np.concatenate([np.full(8 + c, c) for c in range(6)])
LABELS = LABELS[np.random.default_rng(0).permutation(len(LABELS))]


def image_set(labels=LABELS, size: int = 16, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return ImageSet(images, torch.as_tensor(labels), torch.arange(500, 500 + n))


def loader(data=None, episodes: int = 4, fixed: bool = False, embed=None, way=3, shot=2, query=3):
    data = data if data is not None else image_set()
    sampler = EpisodeSampler(data.labels, way, shot, query, seed=11)
    return EpisodeLoader(data, sampler, episodes, MEAN, STD, "cpu", fixed=fixed, embed=embed)


def same_index(a, b) -> bool:
    return all(
        np.array_equal(getattr(a, f), getattr(b, f)) for f in ("classes", "support", "query")
    )


# --- the sampler -------------------------------------------------------------------------------


def test_an_episode_is_a_pure_function_of_seed_and_number():
    a = EpisodeSampler(LABELS, 3, 2, 3, seed=5)
    b = EpisodeSampler(LABELS.copy(), 3, 2, 3, seed=5)
    for i in (0, 1, 17):
        assert same_index(a.episode(i), b.episode(i))
        assert same_index(a.episode(i), a.episode(i))  # asking again changes nothing
    assert not same_index(a.episode(0), a.episode(1))
    assert not same_index(a.episode(0), EpisodeSampler(LABELS, 3, 2, 3, seed=6).episode(0))


def test_support_and_query_are_class_major_distinct_and_disjoint():
    way, shot, query = 4, 3, 5
    sampler = EpisodeSampler(LABELS, way, shot, query, seed=0)
    seen_classes = set()
    for i in range(40):
        ix = sampler.episode(i)
        assert len(ix.classes) == len(set(ix.classes.tolist())) == way
        assert ix.support.shape == (way * shot,) and ix.query.shape == (way * query,)
        # class-major: the first K support images are of classes[0], the next K of classes[1]...
        assert np.array_equal(LABELS[ix.support], np.repeat(ix.classes, shot))
        assert np.array_equal(LABELS[ix.query], np.repeat(ix.classes, query))
        together = np.concatenate([ix.support, ix.query])
        assert len(set(together.tolist())) == len(together)  # no image twice in an episode
        seen_classes |= set(ix.classes.tolist())
    assert seen_classes == set(range(6))  # every class gets its turn


def test_images_of_a_class_vary_between_episodes():
    sampler = EpisodeSampler(LABELS, 6, 1, 1, seed=0)
    firsts = {int(sampler.episode(i).support[0]) for i in range(20)}
    assert len(firsts) > 1


def test_more_ways_than_classes_is_refused_with_the_count():
    with pytest.raises(DataError) as e:
        EpisodeSampler(LABELS, 7, 1, 1, source="the meta-train classes")
    assert str(e.value) == "7-way episodes need 7 classes; the meta-train classes has 6"


def test_a_class_too_small_for_k_plus_q_is_named_with_its_count():
    names = ["cat", "dog", "bird", "fish", "frog", "ship"]
    # class c has 8 + c images: K + Q = 10 leaves out cat (8) and dog (9)
    with pytest.raises(DataError) as e:
        EpisodeSampler(LABELS, 3, 4, 6, class_names=names, source="the validation images")
    message = str(e.value)
    assert "4-shot 6-query episodes need 10 images per class" in message
    assert "the validation images" in message
    assert "'cat' has 8" in message and "'dog' has 9" in message
    assert "bird" not in message
    EpisodeSampler(LABELS, 3, 4, 4, class_names=names)  # 8 each: enough


def test_class_names_follow_the_labels_when_labels_do_not_start_at_zero():
    # meta-test labels of a dataset whose classes are ["0", ..., "9"]: 5..7
    labels = np.array([5] * 6 + [6] * 3 + [7] * 6)
    classes = [str(c) for c in range(10)]
    with pytest.raises(DataError, match="class '6' has 3"):
        EpisodeSampler(labels, 2, 1, 3, class_names=classes)
    sampler = EpisodeSampler(labels, 3, 1, 2, class_names=classes)
    ix = sampler.episode(0)
    assert sorted(ix.classes.tolist()) == [5, 6, 7]
    assert np.array_equal(labels[ix.query], np.repeat(ix.classes, 2))


# --- the loader --------------------------------------------------------------------------------


def test_the_loader_yields_normalised_episodes_and_episode_labels():
    data = image_set()
    ld = loader(data, episodes=3, fixed=True)
    assert len(ld) == 3 and ld.num_samples == 3 * 3 * 3
    batches = list(ld.batches(epoch=1))
    assert len(batches) == 3
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    for n, (episode, labels, positions) in enumerate(batches):
        ix = ld.sampler.episode(n)  # fixed (evaluation) episodes: the sampler's first ones
        assert np.array_equal(positions.numpy(), ix.query)
        assert episode.support.dtype == torch.float32 and not episode.embedded
        assert episode.support.shape == (6, 3, 16, 16) and episode.query.shape == (9, 3, 16, 16)
        want_support = (data.images[ix.support].float() / 255 - mean) / std
        torch.testing.assert_close(episode.support, want_support)
        torch.testing.assert_close(
            episode.query, (data.images[ix.query].float() / 255 - mean) / std
        )
        assert episode.support_labels.tolist() == [0, 0, 1, 1, 2, 2]
        assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        # episode label k is dataset class ix.classes[k]
        assert np.array_equal(data.labels[positions].numpy(), ix.classes[labels.numpy()])


def queries(ld, epoch: int, start: int = 0) -> list[list[int]]:
    return [p.tolist() for _, _, p in ld.batches(epoch, start)]


def test_training_epochs_draw_new_episodes_and_evaluation_repeats_them():
    training = loader(episodes=5)
    one, two = queries(training, 1), queries(training, 2)
    assert one == queries(training, 1)  # deterministic
    assert all(a != b for a, b in zip(one, two, strict=True))
    fixed = loader(episodes=5, fixed=True)
    assert queries(fixed, 1) == queries(fixed, 2) == queries(fixed, 0)
    assert list(fixed) and queries(fixed, 7) == [p.tolist() for _, _, p in fixed]


@pytest.mark.parametrize("fixed", [False, True])
def test_start_resumes_mid_epoch_with_the_same_episodes(fixed):
    ld = loader(episodes=5, fixed=fixed)
    full = list(ld.batches(epoch=3))
    for start in range(6):
        tail = list(ld.batches(epoch=3, start=start))
        assert len(tail) == 5 - start
        for (ea, la, pa), (eb, lb, pb) in zip(tail, full[start:], strict=True):
            assert torch.equal(ea.support, eb.support) and torch.equal(ea.query, eb.query)
            assert torch.equal(la, lb) and torch.equal(pa, pb)


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "parametric"])
def test_embedding_every_image_once_gives_the_per_episode_logits(distance):
    torch.manual_seed(0)
    model = PrototypicalNetwork(distance, input_size=16).eval()
    data = image_set()
    table = loader(data, episodes=4, fixed=True, embed=model.embed)
    plain = loader(data, episodes=4, fixed=True)
    with torch.no_grad():
        pairs = list(zip(table.batches(), plain.batches(), strict=True))
        assert len(pairs) == 4
        for (e_table, y_table, p_table), (e_plain, y_plain, p_plain) in pairs:
            assert e_table.embedded and e_table.support.shape == (6, 400)
            assert torch.equal(p_table, p_plain) and torch.equal(y_table, y_plain)
            torch.testing.assert_close(model(e_table), model(e_plain), rtol=1e-4, atol=1e-4)


# --- the confidence interval -------------------------------------------------------------------


def test_mean_and_ci95_is_1_96_std_over_root_n():
    accs = np.random.default_rng(0).uniform(0.2, 0.8, size=600)
    mean, ci = mean_and_ci95(accs)
    assert mean == pytest.approx(np.mean(accs))
    assert ci == pytest.approx(1.96 * np.std(accs) / np.sqrt(600))
    assert mean_and_ci95([0.5, 0.5, 0.5]) == (0.5, 0.0)
    assert mean_and_ci95([0.0, 1.0]) == pytest.approx((0.5, 1.96 * 0.5 / math.sqrt(2)))
    assert all(math.isnan(v) for v in mean_and_ci95([]))


# --- fixed episode lists -----------------------------------------------------------------------


def write_csv(path, header: list[str], rows: list[list[str]]):
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


def test_an_episode_csv_reads_support_by_class_and_queries(tmp_path):
    names = [f"img_{i:03d}.jpg" for i in range(40)]
    header = ["episode_id", "class0_support0", "class0_support1", "class1_support0",
              "class1_support1", "query0", "query1", "query2"]  # fmt: skip
    rows = [["0", *names[0:7]], ["1", *names[10:17]]]
    episodes = read_episode_csv(write_csv(tmp_path / "val_testcase.csv", header, rows), names)
    assert episodes == [
        {"id": "0", "support": [names[0:2], names[2:4]], "query": names[4:7]},
        {"id": "1", "support": [names[10:12], names[12:14]], "query": names[14:17]},
    ]


def test_an_episode_csv_orders_classes_by_number_not_by_text(tmp_path):
    names = [f"{c}.png" for c in range(12)]
    header = ["episode_id"] + [f"class{c}_support0" for c in range(11)] + ["query0"]
    row = ["7"] + names[:11] + [names[11]]
    (episode,) = read_episode_csv(write_csv(tmp_path / "e.csv", header, [row]), names)
    # class1 must not take class10's image (text order would put class10 after class1)
    assert episode["support"] == [[n] for n in names[:11]]
    assert episode["query"] == ["11.png"]


def test_an_episode_csv_naming_an_unknown_image_says_which_file_and_line(tmp_path):
    names = ["a.png", "b.png", "c.png"]
    header = ["episode_id", "class0_support0", "class1_support0", "query0"]
    rows = [["0", "a.png", "b.png", "c.png"], ["1", "a.png", "zzz.png", "c.png"]]
    path = write_csv(tmp_path / "test.csv", header, rows)
    with pytest.raises(DataError) as e:
        read_episode_csv(path, names)
    assert str(e.value) == f"{path}, line 3: zzz.png is not in the image list"


def test_an_episode_csv_that_is_missing_or_malformed_is_refused(tmp_path):
    with pytest.raises(DataError, match="cannot read episode file .*nothing.csv"):
        read_episode_csv(tmp_path / "nothing.csv", [])
    bad_header = write_csv(
        tmp_path / "h.csv", ["id", "class0_support0", "query0"], [["0", "a", "b"]]
    )
    with pytest.raises(DataError, match="expected a header starting with episode_id"):
        read_episode_csv(bad_header, ["a", "b"])
    no_queries = write_csv(tmp_path / "q.csv", ["episode_id", "class0_support0"], [["0", "a"]])
    with pytest.raises(DataError, match="no class<i>_support<j> or query<k> columns"):
        read_episode_csv(no_queries, ["a"])


# --- meta-train / meta-test splits: the digits -------------------------------------------------


def fewshot_cfg(**overrides) -> FewShotConfig:
    cfg = FewShotConfig(data=DataConfig(name="digits", image_size=16), device="cpu")
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg.validate()


def label_names(split: ImageSet, classes: list[str]) -> set[str]:
    return {classes[int(c)] for c in split.labels.unique()}


def test_digits_meta_test_classes_are_never_in_train_or_validation():
    splits = load_fewshot(fewshot_cfg())
    assert splits.classes == [str(c) for c in range(10)]
    assert label_names(splits.test, splits.classes) == {"5", "6", "7", "8", "9"}
    assert label_names(splits.train, splits.classes) == {"0", "1", "2", "3", "4"}
    assert label_names(splits.val, splits.classes) == {"0", "1", "2", "3", "4"}
    ids = [set(s.ids.tolist()) for s in (splits.train, splits.val, splits.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert sum(map(len, ids)) == 1797  # every digit, once
    # val: a held-out part (15%) of each meta-train class
    for c in range(5):
        n_train, n_val = (int((s.labels == c).sum()) for s in (splits.train, splits.val))
        assert n_val == round(0.15 * (n_train + n_val))
    assert splits.train.images.shape[1:] == (3, 16, 16)
    assert "meta-train classes 0, 1, 2, 3, 4, meta-test 5, 6, 7, 8, 9" in splits.describe()


def test_digits_with_chosen_meta_test_classes():
    splits = load_fewshot(fewshot_cfg(meta_test_classes=["0", "2", "4", "6", "8"]))
    assert label_names(splits.test, splits.classes) == {"0", "2", "4", "6", "8"}
    assert label_names(splits.train, splits.classes) == {"1", "3", "5", "7", "9"}
    assert label_names(splits.val, splits.classes) == {"1", "3", "5", "7", "9"}


def test_digits_with_an_unknown_meta_test_class_is_refused():
    with pytest.raises(DataError, match=r"meta_test_classes \['x'\] are not digit classes"):
        load_fewshot(fewshot_cfg(meta_test_classes=["5", "x"]))


# --- meta-train / meta-test splits: mini-ImageNet-style folders ---------------------------------

COLOURS = {
    "ant": (255, 0, 0), "bee": (0, 255, 0), "cow": (0, 0, 255), "dog": (255, 255, 0),
    "eel": (0, 255, 255), "fox": (255, 0, 255), "gnu": (128, 128, 128),
}  # fmt: skip


def write_classes(folder, counts: dict[str, int]) -> None:
    """One solid-colour 8x8 PNG per image, the colour telling its class."""
    for name, n in counts.items():
        (folder / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), COLOURS[name]).save(folder / name / f"{name}_{i:02d}.png")


def folder_cfg(root) -> FewShotConfig:
    return fewshot_cfg(data=DataConfig(name="folder", path=str(root), image_size=16))


def assert_images_match_labels(split: ImageSet, classes: list[str]) -> None:
    for image, label in zip(split.images, split.labels, strict=True):
        assert tuple(image[:, 0, 0].tolist()) == COLOURS[classes[int(label)]]


def test_a_folder_with_train_and_test(tmp_path):
    write_classes(tmp_path / "train", {"ant": 7, "bee": 7, "cow": 7})
    write_classes(tmp_path / "test", {"dog": 4, "eel": 5})
    splits = load_fewshot(folder_cfg(tmp_path))
    assert splits.classes == ["ant", "bee", "cow", "dog", "eel"]
    assert label_names(splits.test, splits.classes) == {"dog", "eel"} and len(splits.test) == 9
    # validation: held-out images of the meta-train classes (one of 7 per class at 15%)
    assert label_names(splits.val, splits.classes) == {"ant", "bee", "cow"}
    assert len(splits.train) + len(splits.val) == 21 and len(splits.val) == 3
    assert not set(splits.train.ids.tolist()) & set(splits.val.ids.tolist())
    for split in (splits.train, splits.val, splits.test):
        assert_images_match_labels(split, splits.classes)
    assert splits.train.images.shape[1:] == (3, 16, 16)


def test_a_folder_with_train_val_and_test_uses_val_as_validation_classes(tmp_path):
    write_classes(tmp_path / "train", {"ant": 4, "bee": 4, "cow": 4})
    write_classes(tmp_path / "val", {"fox": 3, "gnu": 3})
    write_classes(tmp_path / "test", {"dog": 4, "eel": 5})
    splits = load_fewshot(folder_cfg(tmp_path))
    assert set(splits.classes) == set(COLOURS) and len(splits.classes) == 7
    assert label_names(splits.train, splits.classes) == {"ant", "bee", "cow"}
    assert len(splits.train) == 12  # all of train/: nothing held out
    assert label_names(splits.val, splits.classes) == {"fox", "gnu"} and len(splits.val) == 6
    assert label_names(splits.test, splits.classes) == {"dog", "eel"} and len(splits.test) == 9
    for split in (splits.train, splits.val, splits.test):
        assert_images_match_labels(split, splits.classes)
    ids = torch.cat([splits.train.ids, splits.val.ids, splits.test.ids])
    assert len(ids.unique()) == 27


def test_a_folder_with_train_and_val_only_tests_on_val(tmp_path):
    write_classes(tmp_path / "train", {"ant": 7, "bee": 7})
    write_classes(tmp_path / "val", {"dog": 3, "eel": 3})
    splits = load_fewshot(folder_cfg(tmp_path))
    assert label_names(splits.test, splits.classes) == {"dog", "eel"}
    assert label_names(splits.val, splits.classes) == {"ant", "bee"}


def test_a_meta_test_class_too_small_is_named_with_the_folder_s_class_name(tmp_path):
    write_classes(tmp_path / "train", {"ant": 7, "bee": 7})
    write_classes(tmp_path / "test", {"dog": 5, "eel": 3})
    splits = load_fewshot(folder_cfg(tmp_path))
    with pytest.raises(DataError, match="class 'eel' has 3"):
        EpisodeSampler(splits.test.labels, 2, 1, 3, class_names=splits.classes)


def test_a_class_in_two_splits_is_refused_by_name(tmp_path):
    write_classes(tmp_path / "train", {"ant": 4, "bee": 4, "cow": 4})
    write_classes(tmp_path / "test", {"bee": 4, "cow": 4, "dog": 4})
    with pytest.raises(DataError) as e:
        load_fewshot(folder_cfg(tmp_path))
    message = str(e.value)
    assert "repeats classes of another split: bee, cow" in message
    assert "disjoint classes" in message and str(tmp_path / "test") in message


def test_a_folder_without_test_or_val_is_refused(tmp_path):
    write_classes(tmp_path / "train", {"ant": 4, "bee": 4})
    with pytest.raises(DataError, match="must hold train/<class>/ .* and test/<class>/ or val"):
        load_fewshot(folder_cfg(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        load_fewshot(folder_cfg(tmp_path / "missing"))
