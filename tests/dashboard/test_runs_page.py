"""AppTest tests of the Runs page (issue 13): the table, filters, overlaid curves, and one
run's title, tags, re-run, clone, export and delete; and importing a run zip."""

from __future__ import annotations

import json
import shutil

import pytest

from engine.config import RunConfig
from engine.execution import launcher
from engine.store import catalogue, runs
from tests.support.helpers import plotly_values
from tests.support.pages import page


@pytest.fixture
def two_runs(finished_run, runs_dir):
    """The finished fixture run, and a queued copy of it with another title."""
    other = runs.create_run(RunConfig.from_json(catalogue.config_text(finished_run)), runs_dir)
    catalogue.set_title(other, "second")
    return finished_run, other


def select(at, rows: list[int]):
    key = at.session_state["runs_table_key"]  # changes with the runs the table shows
    at.session_state[key] = {"selection": {"rows": rows, "columns": []}}
    return at.run()


def table(at):
    return at.dataframe[0].value


def test_without_runs_it_says_how_to_start_and_offers_import(runs_dir):
    at = page("runs").run()
    assert not at.exception
    assert any("No runs yet" in i.value for i in at.info)


def test_the_table_lists_every_run_with_its_metrics(two_runs):
    finished, other = two_runs
    at = page("runs").run()
    assert not at.exception
    df = table(at)
    assert list(df["run"]) == [other.name, finished.name]  # newest first
    row = df.set_index("run").loc[finished.name]
    summary = runs.read_status(finished)["summary"]
    assert row["state"] == "finished" and row["best val"] == summary["best_val_acc"]
    assert df.set_index("run").loc[other.name, "title"] == "second"


def test_filters_and_search_narrow_the_table(two_runs):
    finished, other = two_runs
    at = page("runs").run()
    at.multiselect[1].select("finished").run()  # State
    assert list(table(at)["run"]) == [finished.name]
    at.multiselect[1].unselect("finished").run()
    at.text_input[0].input("second").run()
    assert list(table(at)["run"]) == [other.name]
    at.text_input[0].input("no such thing").run()
    assert any("No run matches" in i.value for i in at.info)


def test_selected_runs_overlay_any_metric_smoothed(two_runs):
    finished, _ = two_runs
    at = select(page("runs").run(), [1])  # the finished run
    assert not at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    events = runs.read_metrics(finished)
    x, y = catalogue.curve(events, "acc/val", "step")
    assert list(plotly_values(spec["data"][0]["x"])) == x
    assert list(plotly_values(spec["data"][0]["y"])) == pytest.approx(y)
    next(s for s in at.slider if s.label == "Smoothing").set_value(0.5).run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert list(plotly_values(spec["data"][0]["y"])) == pytest.approx(catalogue.smooth(y, 0.5))
    at.radio[0].set_value("epoch").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert (
        list(plotly_values(spec["data"][0]["x"])) == catalogue.curve(events, "acc/val", "epoch")[0]
    )
    assert any(b.label == "⬇ HTML" for b in at.get("download_button"))  # the chart, as a page


def test_title_and_tags_are_saved(two_runs):
    finished, _ = two_runs
    at = select(page("runs").run(), [1])
    next(t for t in at.text_input if t.label == "Title").input("the fixture")
    next(t for t in at.text_input if t.label == "Tags").input("base, digits")
    next(b for b in at.button if b.label == "Save").click().run()
    assert not at.exception
    status = runs.read_status(finished)
    assert status["title"] == "the fixture" and status["tags"] == ["base", "digits"]


def test_a_bad_tag_is_explained(two_runs):
    at = select(page("runs").run(), [1])
    next(t for t in at.text_input if t.label == "Tags").input("no;way")
    next(b for b in at.button if b.label == "Save").click().run()
    assert any("use up to 32 letters" in e.value for e in at.error)


def test_rerun_and_clone_start_new_runs(two_runs, runs_dir, monkeypatch):
    finished, _ = two_runs
    launched = []
    monkeypatch.setattr(launcher, "launch", lambda d, **kw: launched.append(d))
    at = select(page("runs").run(), [1])
    next(b for b in at.button if b.label.startswith("⟳ Re-run")).click().run()
    assert not at.exception and len(launched) == 1
    assert runs.load_config(launched[0]).to_dict() == runs.load_config(finished).to_dict()
    edited = json.loads(catalogue.config_text(finished))
    edited["epochs"] = 9
    at.text_area[0].input(json.dumps(edited))
    next(b for b in at.button if b.label == "▶ Start the edited config").click().run()
    assert not at.exception and len(launched) == 2 and runs.load_config(launched[1]).epochs == 9


def test_a_clone_outside_the_data_roots_is_refused(two_runs, runs_dir, monkeypatch):
    finished, _ = two_runs
    monkeypatch.setattr(launcher, "launch", lambda d, **kw: pytest.fail("launched"))
    before = len(runs.list_runs(runs_dir))
    edited = json.loads(catalogue.config_text(finished))
    edited["data"].update(name="folder", path="/etc")
    at = select(page("runs").run(), [1])
    at.text_area[0].input(json.dumps(edited))
    next(b for b in at.button if b.label == "▶ Start the edited config").click().run()
    assert any("outside the folders the dashboard may read" in e.value for e in at.error)
    assert len(runs.list_runs(runs_dir)) == before


def test_delete_needs_the_confirmation(two_runs):
    finished, _ = two_runs
    at = select(page("runs").run(), [1])
    delete = next(b for b in at.button if b.label == "🗑 Delete")
    assert delete.disabled
    next(c for c in at.checkbox if c.label.startswith("Yes, delete")).check().run()
    next(b for b in at.button if b.label == "🗑 Delete").click().run()
    assert not at.exception and not finished.exists()


def test_export_offers_every_format(two_runs):
    at = select(page("runs").run(), [1])
    labels = {b.label for b in at.get("download_button")}
    assert {"⬇ metrics (CSV)", "⬇ TensorBoard projector (.zip)", "⬇ embeddings (.npz)",
            "⬇ embeddings (CSV)", "⬇ the whole run (.zip)"} <= labels  # fmt: skip


def test_a_damaged_snapshot_is_said_before_any_download_is_offered(two_runs):
    import numpy as np

    from engine.store.layout import RunLayout

    finished, _ = two_runs
    path = RunLayout(finished).embedding_file(RunLayout(finished).embedding_epochs()[-1])
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["labels"] = arrays["labels"] + 2**40  # not class indices
    np.savez(path, **arrays)
    at = select(page("runs").run(), [1])
    assert not at.exception
    assert any(str(path) in e.value and "class indices" in e.value for e in at.error)
    labels = {b.label for b in at.get("download_button")}
    assert "⬇ embeddings (.npz)" not in labels and "⬇ metrics (CSV)" in labels


def test_the_import_form_is_there_and_an_imported_run_is_listed(two_runs, runs_dir, tmp_path):
    from engine.sharing.archive import pack_run, unpack_upload

    finished, _ = two_runs
    pack_run(finished, tmp_path / "shared.zip")
    shutil.rmtree(finished)
    at = page("runs").run()
    assert at.get("file_uploader")  # AppTest cannot upload; the page hands the bytes to:
    unpack_upload((tmp_path / "shared.zip").read_bytes(), "../../evil name.zip", runs_dir)
    assert finished.name in list(table(at.run())["run"])
    assert not list(tmp_path.parent.glob("evil*"))  # the name only labels; nothing lands there


def test_an_imported_run_naming_a_folder_outside_the_data_roots_cannot_resume(
    finished_run, runs_dir, monkeypatch
):
    monkeypatch.setattr(launcher, "launch", lambda *a, **kw: pytest.fail("launched"))
    cfg = json.loads((finished_run / "config.json").read_text())
    cfg["data"].update(name="folder", path="/etc")  # what a zip from elsewhere can say
    (finished_run / "config.json").write_text(json.dumps(cfg))
    runs.write_status(finished_run, state="stopped")
    at = page("train").run()
    next(b for b in at.button if "Resume" in b.label).click().run()
    assert any("outside the folders the dashboard may read" in e.value for e in at.error)
