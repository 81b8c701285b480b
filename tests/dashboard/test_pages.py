"""AppTest tests of every page: what a user sees with no runs, with a finished run, and on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.execution import launcher
from engine.store import runs
from engine.store.layout import RunLayout
from tests.support.helpers import plotly_values, wait_for, wait_until_ended
from tests.support.pages import app, page


def _plotly_specs(at) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


_values = plotly_values


@pytest.mark.parametrize("name", ["train", "embeddings", "confusion"])
def test_pages_without_runs_say_how_to_start(runs_dir, name):
    at = page(name).run()
    assert not at.exception
    assert any("Start the demo" in i.value for i in at.info)


def test_home_lists_runs_with_their_results(finished_run):
    at = page("home").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert finished_run.name in set(table["run"])
    row = table[table["run"] == finished_run.name].iloc[0]
    assert "finished" in row["status"]
    assert row["test acc"] == pytest.approx(runs.read_status(finished_run)["summary"]["test_acc"])


def test_start_the_demo_launches_a_run_and_opens_the_train_page(runs_dir):
    at = app().run()
    [demo] = [b for b in at.button if "Start the demo" in b.label]
    demo.click().run()
    assert not at.exception
    assert at.title[0].value.endswith("Train")
    [run_dir] = [p for p in runs_dir.iterdir() if p.is_dir()]
    try:
        wait_for(lambda: runs.read_status(run_dir)["state"] != "queued", 60, "the demo to start")
        assert runs.read_status(run_dir)["state"] in ("running", "finished")
        assert runs.load_config(run_dir).name == "demo"
    finally:
        launcher.stop(run_dir)
        wait_until_ended(run_dir, 60)


def _submit_new_run(at, dataset: str, path: str = "", lr: float | None = None):
    at.selectbox[0].select(dataset)
    at.text_input[0].input(path)
    if lr is not None:
        at.number_input[0].set_value(lr)
    [start] = [b for b in at.button if b.label == "▶ Start training"]
    start.click()
    return at.run()


def test_train_page_names_a_bad_dataset_folder(runs_dir):
    missing = str(runs_dir.parent / "no-such-folder")  # under a data root, but not there
    at = page("train").run()
    at = _submit_new_run(at, "folder", missing)
    assert not at.exception
    assert any(missing in e.value and "does not exist" in e.value for e in at.error)
    assert not any(runs_dir.iterdir()), "no run folder is created for bad input"


@pytest.mark.parametrize("typed", ["/etc", "../../../../../../../etc"])
def test_train_page_refuses_a_folder_outside_the_data_roots(runs_dir, typed):
    at = page("train").run()
    at = _submit_new_run(at, "folder", typed)
    assert not at.exception
    assert any("outside the folders the dashboard may read" in e.value
               and "WORKBENCH_DATA_ROOTS" in e.value for e in at.error)  # fmt: skip
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_train_page_explains_an_invalid_learning_rate(runs_dir):
    at = page("train").run()
    at = _submit_new_run(at, "digits", lr=0.0)
    assert any("lr must be > 0, got 0" in e.value for e in at.error)


def test_train_page_shows_curves_and_metrics_of_a_finished_run(finished_run):
    at = page("train").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    summary = runs.read_status(finished_run)["summary"]
    assert metrics["Epoch"] == "3"
    assert metrics["Test accuracy"] == f"{summary['test_acc']:.2%}"
    [spec] = _plotly_specs(at)
    names = {t["name"] for t in spec["data"]}
    assert {"train loss (steps)", "val loss", "val acc", "test acc (best model)"} <= names
    assert not any("Resume" in b.label for b in at.button)


def test_train_page_offers_resume_for_a_stopped_run(finished_run):
    runs.write_status(finished_run, state="stopped")
    at = page("train").run()
    assert any("Resume" in b.label for b in at.button)


def test_train_page_shows_the_error_of_a_failed_run(finished_run):
    runs.write_status(finished_run, state="failed", error="dataset folder /x does not exist")
    at = page("train").run()
    assert any("dataset folder /x does not exist" in e.value for e in at.error)


def test_embeddings_page_projects_every_snapshot_and_shows_neighbours(finished_run):
    at = page("embeddings").run()
    assert not at.exception
    # the scatter, its faithfulness, the trajectories and the two linked views
    fig, quality, _, _, _ = _plotly_specs(at)
    assert [f["name"] for f in fig["frames"]] == ["1", "2", "3"]  # the animation
    metrics = {m.label: m.value for m in at.metric}
    assert 0.5 < float(metrics["Trustworthiness"]) <= 1 and 0.5 < float(metrics["Continuity"]) <= 1
    assert [list(_values(t["x"])) for t in quality["data"]] == [[1, 2, 3]] * 3
    emb = np.load(RunLayout(finished_run).embedding_file(3))
    n_points = sum(len(_values(t["x"])) for t in fig["data"] if t["name"] != "selected")
    assert n_points == len(emb["labels"])
    # PCA layouts are cached in the run folder for the next visitor.
    cached = list(RunLayout(finished_run).projections.glob("pca-*/epoch_*.npy"))
    assert len(cached) == 3
    # The selected point and its 6 nearest neighbours are shown as images.
    captions = [c for im in at.get("image") for c in im.captions][:7]  # then the selection's grid
    assert captions[0].startswith("selected") and captions[6].startswith("#6")


def test_embeddings_page_switches_to_tsne(finished_run):
    at = page("embeddings").run()
    at.radio[0].set_value("tsne").run()
    assert not at.exception
    assert len(list(RunLayout(finished_run).projections.glob("tsne-*/epoch_*.npy"))) == 3
    assert any(s.label == "Perplexity" for s in at.slider)


def test_a_slow_projection_runs_in_the_background_and_is_drawn_when_done(finished_run, monkeypatch):
    monkeypatch.setenv("WORKBENCH_PROJECTION_WAIT", "0")  # every projection counts as slow
    at = page("embeddings").run()
    at.radio[0].set_value("tsne").run()
    assert not at.exception
    # The run did not wait for t-SNE: it shows its progress and no scatter yet.
    texts = [p.proto.text for p in at.get("progress")]
    assert any(t.startswith("Projecting with t-SNE") and "background" in t for t in texts), texts
    assert not _plotly_specs(at)
    cached = RunLayout(finished_run).projections
    wait_for(lambda: len(list(cached.glob("tsne-*/epoch_*.npy"))) == 3, 120, "t-SNE to finish")
    wait_for(lambda: not at.run().get("progress"), 60, "the page to draw the finished t-SNE")
    assert not at.exception
    fig = _plotly_specs(at)[0]  # the scatter (then the faithfulness curve)
    assert [f["name"] for f in fig["frames"]] == ["1", "2", "3"]


def test_embeddings_page_reports_a_damaged_snapshot(finished_run):
    RunLayout(finished_run).embedding_file(2).write_bytes(b"not an npz")
    at = page("embeddings").run()
    assert not at.exception
    assert any("epoch_0002.npz" in e.value for e in at.error)


def test_confusion_page_counts_and_normalises(finished_run):
    at = page("confusion").run()
    assert not at.exception
    cm = np.load(RunLayout(finished_run).confusion_file(3))
    heat, bars = _plotly_specs(at)
    z = _values(heat["data"][0]["z"])
    np.testing.assert_allclose(z.sum(1), 1.0)  # row-normalised by default
    at.toggle[0].set_value(False).run()
    heat = _plotly_specs(at)[0]
    np.testing.assert_array_equal(_values(heat["data"][0]["z"]), cm)
    assert any(f"{int(np.trace(cm))} of {int(cm.sum())}" in c.value for c in at.caption)


def test_confusion_page_reports_a_damaged_matrix(finished_run):
    RunLayout(finished_run).confusion_file(3).write_bytes(b"garbage")
    at = page("confusion").run()
    assert not at.exception
    assert any("epoch_0003.npy" in e.value for e in at.error)


# --- damaged files ---------------------------------------------------------------------------


@pytest.fixture
def runs_with_non_object_json(runs_dir, tiny_config) -> dict[str, str]:
    """Four runs whose status.json or config.json is valid JSON but not an object."""
    damaged = {}
    for which, content in (("status", "[]"), ("status", '"x"'), ("config", "3"), ("config", "[]")):
        run_dir = runs.create_run(tiny_config(), runs_dir)
        getattr(RunLayout(run_dir), which).write_text(content)
        damaged[run_dir.name] = which
    return damaged


def test_home_lists_runs_whose_json_files_are_not_objects(runs_with_non_object_json):
    at = page("home").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert sorted(table["run"]) == sorted(runs_with_non_object_json)
    for row in table.itertuples():
        if runs_with_non_object_json[row.run] == "status":
            assert "damaged" in row.status and "status.json" in row.note
        else:
            assert "config.json" in row.note and row.model == "?"


def test_train_page_shows_each_run_whose_json_files_are_not_objects(runs_with_non_object_json):
    at = page("train").run()
    assert not at.exception
    for run_id, which in runs_with_non_object_json.items():
        at.selectbox(key="run_picker").set_value(run_id).run()
        assert not at.exception
        if which == "status":
            assert any("damaged" in e.value and "status.json" in e.value for e in at.error)


def test_confusion_page_reports_an_empty_matrix_file(finished_run):
    path = RunLayout(finished_run).confusion_file(3)
    path.write_bytes(b"")
    at = page("confusion").run()
    assert not at.exception
    assert any(str(path) in e.value for e in at.error)


@pytest.mark.parametrize("content", ["{ damaged", "[]", '{"epochs": 0}'])
def test_embeddings_page_reports_a_run_whose_config_is_invalid(finished_run, content):
    RunLayout(finished_run).config.write_text(content)
    at = page("embeddings").run()
    assert not at.exception
    assert any(str(RunLayout(finished_run).config) in e.value for e in at.error)


def test_embeddings_page_without_the_runs_config_has_no_run_to_show(finished_run):
    RunLayout(finished_run).config.unlink()  # a folder without config.json is not a run
    at = page("embeddings").run()
    assert not at.exception
    assert any("No embedding snapshots yet" in i.value for i in at.info)


def test_confusion_page_labels_the_axes_with_the_runs_class_names(finished_run):
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    runs.write_status(finished_run, classes=names)  # as the run writes them when its data loads
    at = page("confusion").run()
    assert not at.exception
    heat, bars = _plotly_specs(at)
    assert list(_values(heat["data"][0]["x"])) == names
    assert list(_values(heat["data"][0]["y"])) == names
    assert list(_values(bars["data"][0]["y"])) == names


# --- resume and snapshot epochs from the Train page --------------------------------------------


def test_resume_button_continues_a_stopped_run_to_its_end(finished_run):
    layout = RunLayout(finished_run)
    config = json.loads(layout.config.read_text())
    config["epochs"] = 4  # one more epoch than it trained: work for the resumed run
    layout.config.write_text(json.dumps(config))
    runs.write_status(finished_run, state="stopped")
    at = page("train").run()
    (resume,) = [b for b in at.button if "Resume" in b.label]
    resume.click().run()
    assert not at.exception
    status = wait_until_ended(finished_run)
    assert status["state"] == "finished", layout.log.read_text()
    assert status["summary"]["epochs_done"] == 4
    events = runs.read_metrics(finished_run)
    assert [e["epoch"] for e in events if (e["name"], e["split"]) == ("acc", "val")] == [1, 2, 3, 4]
    assert [e["split"] for e in events if e["name"] == "acc"].count("test") == 1
    assert layout.embedding_epochs() == [1, 2, 3, 4]
    at.run()
    assert {m.label: m.value for m in at.metric}["Epoch"] == "4"


@pytest.mark.parametrize(
    "text, message",
    [
        ("1, x", "snapshot epochs must be whole numbers like 1, 5, 10; got '1, x'"),
        ("0, 5", "snapshot_epochs must lie in [1, 12], got [0]"),
    ],
)
def test_train_form_explains_invalid_snapshot_epochs(runs_dir, text, message):
    at = page("train").run()
    (exact,) = [t for t in at.text_input if t.label.startswith("Snapshot exactly at epochs")]
    exact.input(text)
    [start] = [b for b in at.button if b.label == "▶ Start training"]
    start.click()
    at.run()
    assert not at.exception
    assert any(message in e.value for e in at.error)
    assert not any(runs_dir.iterdir()), "no run folder is created for bad input"


def test_train_page_shows_a_never_launched_run_as_waiting_not_live(runs_dir, tiny_config):
    run_dir = runs.create_run(tiny_config(), runs_dir)  # queued, no process: nothing to stop
    at = page("train").run()
    assert not at.exception
    assert at.selectbox(key="run_picker").value == run_dir.name
    assert not any("Stop" in b.label for b in at.button)
    assert not runs.is_active(run_dir)


@pytest.mark.parametrize("name", ["train", "embeddings", "confusion"])
def test_every_chart_can_be_downloaded_as_html(finished_run, name):
    at = page(name).run()
    assert not at.exception
    charts = at.get("plotly_chart")
    html = [b for b in at.get("download_button") if b.label == "⬇ HTML"]
    assert charts and len(html) == len(charts)
