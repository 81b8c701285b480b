"""AppTest tests of the Transfer page: a finished A-E comparison, its table, charts and actions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from engine.config import DataConfig, ModelConfig, TransferConfig
from engine.store import groups, runs
from tests.support.pages import page, private_copy, train_group


@pytest.fixture(scope="session")
def comparison_template(tmp_path_factory):
    """A finished A-E group (rows A, B, D train; C and E wait) on a tiny two-class folder,
    with EfficientNet-Lite0's real ImageNet weights, trained once per session."""
    root = tmp_path_factory.mktemp("transfer-template")
    rng = np.random.default_rng(0)
    for c, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / "data" / c).mkdir(parents=True)
        for i in range(10):
            noise = rng.integers(0, 40, (16, 16, 3))
            Image.fromarray((np.array(colour) + noise).clip(0, 255).astype(np.uint8)).save(
                root / "data" / c / f"{i}.png"
            )
    base = TransferConfig(
        model=ModelConfig(name="efficientnet_lite0"),
        data=DataConfig(name="folder", path=str(root / "data"), image_size=32,
                        val_fraction=0.2, test_fraction=0.2),
        epochs=2, batch_size=8, snapshot_every=1,
    )  # fmt: skip
    return train_group(root / "runs", "a-e", base)


@pytest.fixture
def comparison(runs_dir, comparison_template):
    private_copy(runs_dir, comparison_template[0])
    return runs_dir, comparison_template[1]


def test_without_comparisons_the_form_is_open_and_says_how_to_start(runs_dir):
    at = page("transfer").run()
    assert not at.exception
    assert any("No comparisons yet" in i.value for i in at.info)
    [form] = [e for e in at.expander if e.label.startswith("New ")]
    assert form.proto.expanded


def test_a_backbone_whose_weights_are_missing_names_the_file_and_makes_nothing(
    runs_dir, weight_cache
):
    at = page("transfer").run()
    at.selectbox[1].select("resnet34")
    [start] = [b for b in at.button if b.label == "▶ Start the comparison"]
    start.click().run()
    assert not at.exception
    (message,) = [e.value for e in at.error]
    assert "resnet34-b627a593.pth" in message and "weights fetch resnet34" in message
    assert str(weight_cache) in message
    assert groups.list_groups(runs_dir) == []
    assert runs.list_runs(runs_dir) == []


@pytest.mark.parametrize("typed", ["/etc/passwd", "../../../../../../../../etc/passwd"])
def test_a_supervised_backbone_outside_the_data_roots_is_refused(runs_dir, typed):
    at = page("transfer").run()
    next(s for s in at.selectbox if s.label == "Preset").set_value("a-e")
    next(t for t in at.text_input if t.label.startswith("A–E rows B, D")).input(typed)
    next(b for b in at.button if b.label == "▶ Start the comparison").click()
    at.run()
    assert not at.exception
    (message,) = [e.value for e in at.error]
    assert f"{typed} is outside the folders the dashboard may read" in message
    assert groups.list_groups(runs_dir) == []


def test_the_table_has_a_row_per_setting_with_parameters_and_accuracies(comparison):
    runs_dir, group = comparison
    at = page("transfer").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["row"]) == [r.label for r in group.rows]
    by_row = table.set_index("row")
    frozen = by_row.loc["D: supervised, frozen"]
    finetuned = by_row.loc["B: supervised, fine-tuned"]
    assert frozen["trainable params"] == 1280 * 2 + 2  # the new head only
    assert finetuned["trainable params"] == finetuned["total params"] == frozen["total params"]
    assert frozen["feature pass s"] > 0 and np.isnan(finetuned["feature pass s"])
    for label in ("A: no pretraining", "B: supervised, fine-tuned", "D: supervised, frozen"):
        run_id = by_row.loc[label, "run"]
        summary = runs.read_status(runs_dir / run_id)["summary"]
        assert by_row.loc[label, "test acc"] == pytest.approx(summary["test_acc"])
        assert by_row.loc[label, "best val acc"] == pytest.approx(summary["best_val_acc"])
        assert "finished" in by_row.loc[label, "state"]
    # The self-supervised rows wait, and say why.
    assert by_row.loc["C: self-supervised, fine-tuned", "run"] == ""
    assert any("C: self-supervised" in c.value and "BYOL" in c.value for c in at.caption)


def test_curves_overlay_every_run_with_one_colour_per_run(comparison):
    _, group = comparison
    at = page("transfer").run()
    curves = json.loads(at.get("plotly_chart")[0].proto.spec)
    colours: dict[str, set] = {}
    for trace in curves["data"]:
        colours.setdefault(trace["legendgroup"], set()).add(trace["line"]["color"])
    trained = [r.label for r in group.rows if r.run_id]
    assert sorted(colours) == sorted(trained)
    assert all(len(c) == 1 for c in colours.values())  # the same colour on both charts
    assert len({next(iter(c)) for c in colours.values()}) == len(trained)  # distinct per run
    bars = json.loads(at.get("plotly_chart")[1].proto.spec)["data"][0]
    assert len(bars["y"]) == len(trained)


def test_embeddings_of_two_runs_side_by_side_at_the_same_epoch(comparison):
    at = page("transfer").run()
    titles = [
        json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")[2:]
    ]
    titles = [t for t in titles if "95% interval" not in t]  # the statistics' chart
    assert len(titles) == 2
    assert titles[0].startswith("A: no pretraining · epoch 2")
    assert titles[1].startswith("B: supervised, fine-tuned · epoch 2")


def test_removing_a_run_needs_confirmation_and_keeps_its_row(comparison):
    runs_dir, group = comparison
    victim = group.rows[0].run_id
    at = page("transfer").run()
    remove = next(b for b in at.button if "Remove" in b.label)
    assert remove.disabled  # not before "Yes, delete its folder" is ticked
    next(c for c in at.checkbox if "delete" in c.label).check().run()
    next(b for b in at.button if "Remove" in b.label).click().run()
    assert not at.exception
    assert not (runs_dir / victim).exists()
    assert groups.load_group(group.group_id, runs_dir).rows[0].note == "removed"
    assert "removed" in at.dataframe[0].value["state"].iloc[0]


def test_one_run_shows_what_its_starting_weights_loaded(comparison):
    _, group = comparison
    at = page("transfer").run()
    report = [c.value for c in at.caption if c.value.startswith("Starting weights")]
    assert report == ["Starting weights: random initialisation"]  # row A: no pretraining
    run_box = next(s for s in at.selectbox if s.label == "Run")
    run_box.set_value(group.rows[1].run_id).run()  # B: ImageNet weights
    report = [c.value for c in at.caption if c.value.startswith("Starting weights")]
    assert report and "ImageNet weights of efficientnet_lite0: loaded" in report[0]


def test_the_same_run_on_both_sides_asks_for_two_runs(comparison):
    at = page("transfer").run()
    next(s for s in at.selectbox if s.label == "Right").set_value(
        next(s for s in at.selectbox if s.label == "Left").value
    ).run()
    assert not at.exception
    assert any("Pick two different runs" in c.value for c in at.caption)


def test_a_failed_run_shows_its_error(comparison):
    runs_dir, group = comparison
    runs.write_status(runs_dir / group.rows[0].run_id, state="failed", error="disk full")
    at = page("transfer").run()
    assert not at.exception
    assert any("A: no pretraining" in e.value and "disk full" in e.value for e in at.error)


def test_home_names_each_transfer_runs_mode(comparison):
    runs_dir, group = comparison
    at = page("home").run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("run")
    for row in group.rows:
        if row.run_id:
            mode = runs.load_config(runs_dir / row.run_id).mode
            assert table.loc[row.run_id, "model"] == f"efficientnet_lite0 · {mode}"
