"""AppTest tests of the Segmentation page on a finished FCN-32s vs improved comparison."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from engine.config import DataConfig, SegmentConfig
from engine.data.landcover import CLASS_COLOURS, labels_to_rgb, synthetic_scene
from engine.store import runs
from engine.store.layout import RunLayout
from tests.support.helpers import plotly_values
from tests.support.pages import page, private_copy, train_group


def write_pairs(folder, indices, size=64):
    folder.mkdir(parents=True)
    for i in indices:
        image, labels = synthetic_scene(i, size)
        Image.fromarray(image).save(folder / f"{i:04d}_sat.jpg")
        Image.fromarray(labels_to_rgb(labels)).save(folder / f"{i:04d}_mask.png")


@pytest.fixture(scope="session")
def segmentation_template(tmp_path_factory):
    """FCN-32s (narrow fc6/fc7) and FCN-8s-Lite0, two epochs each on 16 small pairs."""
    root = tmp_path_factory.mktemp("segmentation-template")
    write_pairs(root / "data" / "train", range(12))
    write_pairs(root / "data" / "validation", range(12, 16))
    base = SegmentConfig(
        data=DataConfig(name="deepglobe", path=str(root / "data"), image_size=64),
        epochs=2, batch_size=8, fc_channels=16,
    )  # fmt: skip
    return train_group(root / "runs", "fcn32s-vs-improved", base)


@pytest.fixture
def comparison(runs_dir, segmentation_template):
    private_copy(runs_dir, segmentation_template[0])
    return runs_dir, segmentation_template[1]


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def show(at):
    return next(s for s in at.selectbox if s.label == "Show")


def decode(source: str) -> np.ndarray:
    data = base64.b64decode(source.removeprefix("data:image/png;base64,"))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_without_runs_the_page_offers_the_form(runs_dir):
    at = page("segmentation").run()
    assert not at.exception
    assert any("No segmentation runs yet" in i.value for i in at.info)
    labels = [b.label for b in at.button]
    assert "▶ Train FCN-32s vs improved" in labels and "▶ Train the improved model only" in labels
    legend = " ".join(m.value for m in at.markdown)
    for name in ("Urban", "Agriculture", "Rangeland", "Forest", "Water", "Barren", "Unknown"):
        assert name in legend


def test_a_comparison_shows_both_models_side_by_side_with_a_timeline(comparison):
    runs_dir, group = comparison
    at = page("segmentation").run()
    assert not at.exception and not at.error
    assert show(at).value == f"group:{group.group_id}"  # the comparison is shown first
    table = at.dataframe[0].value
    assert list(table["row"]) == ["A: FCN-32s (VGG-16)", "B: fcn8s_lite0"]
    assert table["best val mIoU"].between(0, 1).all()
    assert table["test mIoU"].notna().all()

    timeline = charts(at)[0]
    images = [t for t in timeline["data"] if t["type"] == "image"]
    stems = sorted(
        p.name.removesuffix("_sat.png")
        for p in RunLayout(runs_dir / group.rows[0].run_id).mask_inputs.glob("*_sat.png")
    )
    assert len(stems) == 3
    # per image: satellite; satellite + truth; satellite + each model's prediction
    assert len(images) == len(stems) * (1 + 2 * 3)
    assert [f["name"] for f in timeline["frames"]] == ["1", "2"]
    assert len(timeline["layout"]["sliders"][0]["steps"]) == 2
    # The frame of epoch 1 holds each model's epoch-1 mask, in class colours only.
    frame = timeline["frames"][0]
    assert len(frame["data"]) == len(stems) * 2
    fcn32s_layout = RunLayout(runs_dir / group.rows[0].run_id)
    first = decode(frame["data"][0]["source"])
    on_disk = np.asarray(Image.open(fcn32s_layout.mask_dir(1) / f"{stems[0]}.png").convert("RGB"))
    assert np.array_equal(first, on_disk)
    assert {tuple(c) for c in first.reshape(-1, 3)} <= set(CLASS_COLOURS)

    iou = charts(at)[1]
    miou = [t for t in iou["data"] if t["xaxis"] == "x"]
    assert [t["name"] for t in miou] == ["A: FCN-32s (VGG-16)", "B: fcn8s_lite0"]
    assert all(len(plotly_values(t["y"])) == 2 for t in miou)
    bars = [t for t in iou["data"] if t["type"] == "bar"]  # per-class IoU, model beside model
    assert [t["name"] for t in bars] == ["A: FCN-32s (VGG-16)", "B: fcn8s_lite0"]
    summary = runs.read_status(runs_dir / group.rows[1].run_id)["summary"]
    assert list(bars[1]["x"]) == ["Urban", "Agriculture", "Rangeland", "Forest", "Water", "Barren"]
    last = {e["name"]: e["value"] for e in runs.read_metrics(runs_dir / group.rows[1].run_id)
            if e["split"] == "val" and e["epoch"] == 2}  # fmt: skip
    assert plotly_values(bars[1]["y"]).tolist() == pytest.approx(
        [last.get(f"iou/{c}") for c in bars[1]["x"]]
    )
    assert summary["best_val_miou"] == pytest.approx(table["best val mIoU"][1])


def test_one_run_shows_strip_per_class_iou_and_pixel_confusion(comparison):
    runs_dir, group = comparison
    improved = group.rows[1].run_id
    at = page("segmentation").run()
    show(at).set_value(f"run:{improved}").run()
    assert not at.exception and not at.error
    figs = charts(at)
    timeline, iou, confusion = figs[0], figs[1], figs[2]
    assert len([t for t in timeline["data"] if t["type"] == "image"]) == 3 * (1 + 2 * 2)
    per_class = [t["name"] for t in iou["data"] if t["xaxis"] == "x2"]
    assert per_class == ["Urban", "Agriculture", "Rangeland", "Forest", "Water", "Barren"]
    heat = confusion["data"][0]
    assert heat["y"] == list(("Urban", "Agriculture", "Rangeland", "Forest", "Water", "Barren",
                              "Unknown"))  # fmt: skip
    assert len(heat["x"]) == 6  # Unknown is never predicted
    cm = np.load(RunLayout(runs_dir / improved).confusion_file(2))
    assert plotly_values(heat["customdata"]).reshape(cm.shape).sum() == cm.sum()
    # the strip: per image its satellite image, truth, and a mask per snapshot epoch
    assert sum(len(el.proto.imgs) for el in at.get("image")) == 3 * (2 + 2)


def test_opacity_reaches_every_overlay(comparison):
    at = page("segmentation").run()
    next(s for s in at.slider if s.label == "Mask opacity").set_value(0.3).run()
    timeline = charts(at)[0]
    overlays = [t for t in timeline["data"] if t["type"] == "image" and "opacity" in t]
    assert overlays and {t["opacity"] for t in overlays} == {0.3}
    assert {d["opacity"] for f in timeline["frames"] for d in f["data"]} == {0.3}


def test_a_missing_mask_file_shows_the_bare_image_not_an_error(comparison):
    runs_dir, group = comparison
    layout = RunLayout(runs_dir / group.rows[0].run_id)
    for png in layout.mask_dir(2).glob("*.png"):
        png.unlink()
    at = page("segmentation").run()
    assert not at.exception and not at.error
    timeline = charts(at)[0]
    frame2 = timeline["frames"][1]
    sats = sorted(layout.mask_inputs.glob("*_sat.png"))
    # FCN-32s is the first of two models in each image's row: each shows its own image
    for sat, shown in zip(sats, frame2["data"][::2], strict=True):
        assert np.array_equal(decode(shown["source"]), np.asarray(Image.open(sat).convert("RGB")))
    # the improved model's masks are still there
    assert {tuple(c) for c in decode(frame2["data"][1]["source"]).reshape(-1, 3)} <= set(
        CLASS_COLOURS
    )


def test_a_bad_folder_in_the_form_is_refused_with_its_name(runs_dir, tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "0001_sat.jpg")
    at = page("segmentation").run()
    next(s for s in at.selectbox if s.label == "Dataset").set_value("deepglobe")
    at.text_input[0].set_value(str(folder))
    next(b for b in at.button if "FCN-32s vs improved" in b.label).click().run()
    assert not at.exception
    assert any("0001_sat.jpg" in e.value and "0001_mask.png" in e.value for e in at.error)
    assert runs.list_runs(runs_dir) == []
