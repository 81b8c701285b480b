"""AppTest tests of the Self-supervised page: the monitor of a tiny finished BYOL run (metrics,
the three-panel chart, the collapse warning), its embeddings and augmented views, the A-E
grid tab, the empty state and the form."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from engine.config import DataConfig, ModelConfig, RunConfig, SSLConfig, TransferConfig
from engine.execution import comparisons, executor
from engine.models.backbones import get_backbone
from engine.ssl import collapse_threshold
from engine.store import groups, runs
from engine.store.layout import RunLayout
from engine.train import read_events
from tests.support.helpers import plotly_values
from tests.support.pages import page, private_copy

PROJ = 32


def pattern_folder(root):
    """3 classes x 14 noisy 16x16 images in random colours, told apart by their stripes."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    for name, pattern in {
        "a": (yy // 2) % 2,
        "b": (xx // 2) % 2,
        "c": ((xx + yy) // 3) % 2,
    }.items():
        (root / name).mkdir(parents=True)
        for i in range(14):
            fg, bg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            pixels = np.where(pattern[..., None] == 1, fg, bg) + rng.normal(0, 20, (16, 16, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def ssl_template(tmp_path_factory):
    """One finished BYOL run (ResNet-18 at 16 px, 2 epochs of 2 steps), trained once."""
    root = tmp_path_factory.mktemp("ssl-template")
    data = pattern_folder(root / "data")
    cfg = SSLConfig(
        data=DataConfig(name="folder", path=str(data), image_size=16, val_fraction=0.25),
        epochs=2, batch_size=16, hidden_dim=64, projection_dim=PROJ, knn_k=5, knn_bank_size=100,
        snapshot_size=20, snapshot_every=1, log_every=1, seed=0, device="cpu",
    )  # fmt: skip
    run_dir = runs.create_run(cfg, root / "runs")
    executor.execute(run_dir)
    assert runs.read_status(run_dir)["state"] == "finished"
    return root / "runs", run_dir.name


@pytest.fixture
def trained(runs_dir, ssl_template):
    private_copy(runs_dir, ssl_template[0])
    return runs_dir / ssl_template[1]


def val_series(run_dir, name: str) -> list[float]:
    return [e["value"] for e in read_events(RunLayout(run_dir).metrics)[0]
            if (e["name"], e["split"]) == (name, "val")]  # fmt: skip


def monitor_chart(at) -> dict:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        titles = [a.get("text", "") for a in spec["layout"].get("annotations", [])]
        if "kNN accuracy (held-out images)" in titles:
            return spec
    raise AssertionError("no monitor chart on the page")


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_the_monitor_shows_the_knn_accuracy_against_the_random_init_backbone(trained):
    at = page("ssl").run()
    assert not at.exception and not at.error
    knn, spread = val_series(trained, "knn_acc"), val_series(trained, "collapse_std")
    random_init = runs.read_status(trained)["model_info"]["knn_acc_random_init"]
    assert metric(at, "kNN accuracy, last epoch") == f"{knn[-1]:.1%}"
    assert metric(at, "Best kNN accuracy") == f"{max(knn):.1%}"
    assert metric(at, "Random-init backbone") == f"{random_init:.1%}"
    assert metric(at, "Projection spread") == f"{spread[-1]:.4f}"
    delta = next(m for m in at.metric if m.label == "kNN accuracy, last epoch").proto.delta
    assert delta == f"{knn[-1] - random_init:+.1%} vs random init"
    status = runs.read_status(trained)
    summary, baseline = status["summary"], status["model_info"]["test_knn_acc_random_init"]
    (note,) = [m.value for m in at.markdown if summary["backbone_file"] in m.value]
    assert f"**{summary['test_knn_acc']:.1%}**" in note
    assert f"vs the random-init backbone's {baseline:.1%}" in note
    v = summary["test_knn_vs_random_init"]
    assert f"**{v['verdict']}** (exact McNemar, p = {v['p']:.2g}" in note  # a paired test


def test_the_monitor_chart_has_loss_knn_accuracy_and_spread_panels(trained):
    at = page("ssl").run()
    spec = monitor_chart(at)
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert titles[:3] == [
        "BYOL loss (2 − 2 cos, both directions)", "kNN accuracy (held-out images)",
        "Spread of normalised projections",
    ]  # fmt: skip
    traces = {t["name"]: t for t in spec["data"]}
    events = read_events(RunLayout(trained).metrics)[0]
    train_loss = [e["value"] for e in events if (e["name"], e["split"]) == ("loss", "train")]
    np.testing.assert_allclose(plotly_values(traces["train (steps)"]["y"]), train_loss)
    np.testing.assert_allclose(plotly_values(traces["validation views"]["y"]),
                               val_series(trained, "loss"))  # fmt: skip
    knn = traces["BYOL backbone"]
    assert knn["xaxis"] == "x2"
    np.testing.assert_allclose(plotly_values(knn["y"]), val_series(trained, "knn_acc"))
    assert list(plotly_values(knn["x"])) == [1, 2]
    spread = traces["std"]
    assert spread["xaxis"] == "x3"
    np.testing.assert_allclose(plotly_values(spread["y"]), val_series(trained, "collapse_std"))
    # the reference lines: random init (kNN panel), healthy and collapse (spread panel)
    lines = {(s["yref"], round(s["y0"], 6)) for s in spec["layout"]["shapes"]}
    random_init = runs.read_status(trained)["model_info"]["knn_acc_random_init"]
    assert lines == {
        ("y2", round(random_init, 6)),
        ("y3", round(1 / math.sqrt(PROJ), 6)),
        ("y3", round(collapse_threshold(PROJ), 6)),
    }


def test_a_healthy_run_has_no_collapse_warning(trained):
    assert val_series(trained, "collapse_std")[-1] >= collapse_threshold(PROJ)  # as trained
    at = page("ssl").run()
    assert not at.exception
    assert not [w for w in at.warning if "Collapse" in w.value]


def test_a_collapsed_spread_at_the_last_epoch_raises_the_warning(trained):
    path = RunLayout(trained).metrics
    events = [json.loads(line) for line in path.read_text().splitlines()]
    last = max(e["epoch"] for e in events if e["name"] == "collapse_std")
    for e in events:
        if (e["name"], e["split"], e["epoch"]) == ("collapse_std", "val", last):
            e["value"] = 1e-4
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    at = page("ssl").run()
    assert not at.exception
    (warning,) = [w.value for w in at.warning if "Collapse" in w.value]
    assert "0.0001" in warning and f"{collapse_threshold(PROJ):.4f}" in warning
    assert metric(at, "Projection spread") == "0.0001"


def test_an_earlier_collapse_that_recovered_raises_no_warning(trained):
    path = RunLayout(trained).metrics
    events = [json.loads(line) for line in path.read_text().splitlines()]
    for e in events:
        if (e["name"], e["split"], e["epoch"]) == ("collapse_std", "val", 1):
            e["value"] = 1e-4
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    at = page("ssl").run()
    assert not at.exception
    assert not [w for w in at.warning if "Collapse" in w.value]


def test_embeddings_across_epochs_show_every_snapshot_point(trained):
    at = page("ssl").run()
    assert not at.exception
    layout = RunLayout(trained)
    last = np.load(layout.embedding_file(2))
    spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if json.loads(c.proto.spec).get("frames"))  # fmt: skip
    assert [f["name"] for f in spec["frames"]] == ["1", "2"]
    classes = [t for t in spec["data"] if t["name"] in ("a", "b", "c")]
    assert sum(len(plotly_values(t["x"])) for t in classes) == len(last["labels"])


def views_image(at):
    (image,) = [el for el in at.get("image") if el.proto.imgs
                and el.proto.imgs[0].caption.startswith("rows: the image, view a")]  # fmt: skip
    return image.proto.imgs[0]


def test_augmented_views_are_one_picture_drawn_by_its_seed(trained):
    at = page("ssl").run()
    assert not at.exception and not at.error
    first = views_image(at).url
    cfg = runs.load_config(trained)
    caption = next(c.value for c in at.caption if c.value.startswith("Each view:"))
    assert f"keeping {cfg.crop_scale_min:.0%}–100% of the area" in caption
    assert ("horizontal flip (p 0.5)" in caption) == cfg.flip
    at.number_input(key="ssl_views_seed").set_value(1).run()
    assert not at.exception
    assert views_image(at).url != first  # other images, other views
    at.number_input(key="ssl_views_seed").set_value(0).run()
    assert views_image(at).url == first  # the same draw again
    at.number_input(key="ssl_views_n").set_value(4).run()
    assert not at.exception and views_image(at).url != first


def test_the_grid_tab_says_how_to_make_a_grid(trained):
    at = page("ssl").run()
    (info,) = [i.value for i in at.info if "No A–E grid uses this backbone yet" in i.value]
    assert f"--ssl-weights {trained.name}" in info and "--model resnet18" in info


def test_the_grid_tab_tabulates_a_grid_that_uses_the_run(trained, runs_dir, weight_cache):
    weight_cache.mkdir()
    torch.save(torchvision.models.resnet18(weights=None).state_dict(),
               weight_cache / get_backbone("resnet18").weight_file().filename)  # fmt: skip
    cfg = runs.load_config(trained)
    base = TransferConfig(model=ModelConfig(name="resnet18"), data=cfg.data, epochs=1,
                          device="cpu")  # fmt: skip
    group = comparisons.create_group("a-e", base, runs_dir, ssl_weights=trained.name)
    at = page("ssl").run()
    assert not at.exception and not at.error
    assert not [i for i in at.info if "No A–E grid" in i.value]
    assert next(s for s in at.selectbox if s.label == "A–E grid").value == group.group_id
    table = next(d.value for d in at.dataframe if "pre-training" in d.value.columns)
    assert list(table["setting"]) == list("ABCDEF")  # F: the random-init frozen control
    assert table["pre-training"][2] == "BYOL, without labels (folder)"
    assert table["backbone from"][2] == table["backbone from"][4] == trained.name
    assert table["pre-training"][1] == "ImageNet, with labels (torchvision)"
    assert list(table["state"]) == ["queued"] * 6


def test_without_runs_the_page_says_so_and_opens_the_form(runs_dir):
    runs.create_run(RunConfig(epochs=1), runs_dir)  # a classification run: not listed
    at = page("ssl").run()
    assert not at.exception
    assert any("No self-supervised run yet" in i.value for i in at.info)
    [form] = [e for e in at.expander if e.label.startswith("New ")]
    assert form.proto.expanded
    assert "▶ Pretrain with BYOL" in [b.label for b in at.button]
    assert not at.tabs


def submit(at, **fields):
    for label, value in fields.items():
        widget = next(w for w in [*at.selectbox, *at.text_input] if w.label == label)
        if hasattr(widget, "select"):
            widget.select(value)
        else:
            widget.input(value)
    next(b for b in at.button if b.label == "▶ Pretrain with BYOL").click()
    return at.run()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"Dataset": "folder"}, "data.path is required for the 'folder' dataset"),
        ({"Only classes (optional)": "3"}, "data.classes must name at least 2 different classes"),
        ({"Dataset": "folder", "Folder (not for digits)": "/no/such/folder"}, "/no/such/folder"),
    ],
    ids=["no-folder", "one-class", "missing-folder"],
)
def test_the_form_explains_a_value_that_cannot_work_and_makes_no_run(runs_dir, fields, message):
    at = submit(page("ssl").run(), **fields)
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert runs.list_runs(runs_dir) == []


@pytest.fixture
def queued_small_run(runs_dir, tmp_path):
    """A BYOL run made but not started, on a folder of 3 classes x 5 images (9 to train on)."""
    rng = np.random.default_rng(0)
    for name in "abc":
        (tmp_path / "small" / name).mkdir(parents=True)
        for i in range(5):
            pixels = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "small" / name / f"{i}.png")
    data = DataConfig(name="folder", path=str(tmp_path / "small"), image_size=16)
    return runs.create_run(SSLConfig(data=data), runs_dir)


def test_a_run_that_has_not_started_waits_for_its_first_steps(queued_small_run):
    at = page("ssl").run()
    assert any("Waiting for the first steps" in i.value for i in at.info)
    assert {m.label: m.value for m in at.metric} == {
        "kNN accuracy, last epoch": "–", "Best kNN accuracy": "–",
        "Random-init backbone": "–", "Projection spread": "–",
    }  # fmt: skip
    assert any("No embedding snapshot yet" in i.value for i in at.info)


def test_augmented_views_of_a_training_set_smaller_than_asked_for(queued_small_run):
    at = page("ssl").run()
    assert not at.exception, [e.value for e in at.exception]
    views_image(at)


# --- the Transfer page: a finished BYOL run starts rows C and E -----------------------------------


def byol_choice(at):
    return next(s for s in at.selectbox if s.label == "A–E rows C, E: self-supervised backbone")


def test_the_transfer_form_offers_finished_byol_runs_only(trained, runs_dir):
    unfinished = runs.create_run(SSLConfig(epochs=1), runs_dir)  # queued, never trained
    at = page("transfer").run()
    assert not at.exception
    options = byol_choice(at).options
    assert len(options) == 2 and options[0].startswith("—")
    assert trained.name in options[1] and not any(unfinished.name in o for o in options)


def fill_transfer_form(at, run_id: str, supervised: str, data_path: str, backbone="resnet18"):
    next(s for s in at.selectbox if s.label == "Preset").set_value("a-e")
    next(s for s in at.selectbox if s.label == "Backbone").set_value(backbone)
    next(s for s in at.selectbox if s.label == "Dataset").set_value("folder")
    next(s for s in at.selectbox if s.label == "Input size (px)").set_value(32)
    next(t for t in at.text_input if t.label.startswith("Dataset folder")).input(data_path)
    byol_choice(at).set_value(run_id)
    next(t for t in at.text_input if t.label.startswith("A–E rows B, D")).input(supervised)
    next(b for b in at.button if b.label == "▶ Start the comparison").click()
    return at.run()


def test_the_transfer_form_starts_rows_c_and_e_from_the_byol_runs_backbone(
    trained, runs_dir, weight_cache, monkeypatch, tmp_path
):
    weight_cache.mkdir()
    torch.save(torchvision.models.resnet18(weights=None).state_dict(),
               weight_cache / get_backbone("resnet18").weight_file().filename)  # fmt: skip
    launched = []
    monkeypatch.setattr(
        comparisons, "launch_group", lambda g, d=None, after=(): launched.append(g) or []
    )
    # Other data than the BYOL run's (here a copy): its split is not the grid's concern.
    data_path = shutil.copytree(runs.load_config(trained).data.path, tmp_path / "other")
    at = fill_transfer_form(page("transfer").run(), trained.name, "imagenet", str(data_path))
    assert not at.exception and not at.error, [e.value for e in at.error]
    (group,) = launched
    configs = [runs.load_config(runs_dir / r.run_id) for r in group.rows]
    backbone = str((RunLayout(trained).checkpoints / "backbone.pt").resolve())
    assert [c.backbone_weights for c in configs] == [
        "none", "imagenet", backbone, "imagenet", backbone, "none",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "backbone, message",
    [
        ("resnet18", "used another split of folder (split_seed, val_fraction, test_fraction)"),
        ("efficientnet_lite0", "trained a resnet18 backbone; this comparison's backbone is "
                               "efficientnet_lite0"),
    ],
)  # fmt: skip
def test_the_transfer_form_refuses_a_byol_run_that_does_not_fit_the_grid(
    trained, runs_dir, monkeypatch, backbone, message
):
    """The same folder split otherwise (the BYOL run held out 25% for validation, the grid
    15%: pretraining saw grid test images), or another architecture: refused, nothing made."""
    monkeypatch.setattr(
        comparisons, "launch_group", lambda g, d=None, after=(): pytest.fail("launched")
    )
    data_path = runs.load_config(trained).data.path
    at = fill_transfer_form(page("transfer").run(), trained.name, "imagenet", data_path, backbone)
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert groups.list_groups(runs_dir) == []
    assert [r.run_id for r in runs.list_runs(runs_dir)] == [trained.name]


def test_the_transfer_form_names_a_supervised_backbone_that_is_not_there(
    trained, runs_dir, monkeypatch
):
    monkeypatch.setattr(
        comparisons, "launch_group", lambda g, d=None, after=(): pytest.fail("launched")
    )
    data_path = runs.load_config(trained).data.path
    at = fill_transfer_form(page("transfer").run(), trained.name, "no-such-run", data_path)
    assert not at.exception
    assert any("weights 'no-such-run': no such weight file" in e.value for e in at.error)
    assert groups.list_groups(runs_dir) == []
    assert [r.run_id for r in runs.list_runs(runs_dir)] == [trained.name]
