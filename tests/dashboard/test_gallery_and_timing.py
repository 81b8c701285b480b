"""Home's gallery (a card per experiment with its quick demo and time), the quick demo a page
offers when it has nothing of its kind, the estimate under each form, and the presenter's
focus view."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.components import gallery
from engine.execution.quick import QUICK
from tests.support.pages import page


def test_home_shows_a_card_per_experiment_with_its_quick_demo(runs_dir):
    at = page("home").run()
    assert not at.exception
    quick = [b for b in at.button if b.label.startswith("▶ Quick demo")]
    assert len(quick) == len(QUICK) == 9
    text = " ".join(m.value for m in at.markdown)
    for demo in QUICK.values():
        assert demo.title in text
    courses = " ".join(c.value for c in at.caption)
    assert "ENGN8536 Lab 4" in courses and "seed 00" not in courses.lower()


@pytest.mark.parametrize("key", list(QUICK))
def test_every_card_has_a_shipped_preview(key):
    preview = gallery.PREVIEWS / f"{key}.png"
    assert preview.is_file() and preview.stat().st_size > 1000


def test_a_card_shows_the_latest_result_of_its_kind(finished_run):
    import streamlit  # noqa: F401  (the cached drawing runs outside a page here)

    from engine.store import runs

    all_runs = runs.list_runs(Path(finished_run).parent)
    image, caption = gallery.picture(QUICK["train"], all_runs)
    assert caption == f"latest: {Path(finished_run).name}"
    assert isinstance(image, bytes) and image[:4] == b"\x89PNG"
    image, caption = gallery.picture(QUICK["segmentation"], all_runs)  # none of that kind
    assert caption == "preview" and image.endswith("segmentation.png")


@pytest.mark.parametrize("name, key", [("dynamic", "dynamic"), ("longtail", "longtail"),
                                       ("fewshot", "fewshot")])  # fmt: skip
def test_an_empty_page_offers_its_quick_demo_at_the_top(runs_dir, name, key):
    at = page(name).run()
    assert not at.exception
    labels = [b.label for b in at.button]
    assert labels[0].startswith(f"▶ Quick demo: {QUICK[key].title}")


@pytest.mark.parametrize("name", ["train", "dynamic", "longtail", "transfer", "ssl"])
def test_each_form_says_how_long_before_the_click(runs_dir, name):
    at = page(name).run()
    assert not at.exception
    assert any(c.value.startswith("⏱ about") and "here" in c.value for c in at.caption), name


def test_a_long_run_is_flagged_with_the_quick_settings(runs_dir):
    at = page("train").run()
    [epochs] = [n for n in at.number_input if n.label == "Epochs"]
    epochs.set_value(1000).run()  # 1,000 epochs of the digits
    assert any("over 10 minutes" in w.value for w in at.warning)


def test_focus_hides_the_forms_and_the_recipes(runs_dir):
    at = page("train").run()
    assert any(e.label == "New run" for e in at.expander)
    at.toggle(key="focus_train").set_value(True).run()
    assert not at.exception
    assert not any(e.label in ("New run",) or e.label.startswith("As the course")
                   for e in at.expander)  # fmt: skip


def test_a_segmentation_card_shows_its_newest_mask_in_the_cards_shape(tmp_path):
    import io

    from PIL import Image

    from engine.config import SegmentConfig
    from engine.store import runs
    from engine.store.layout import RunLayout

    run_dir = runs.create_run(SegmentConfig(), tmp_path)
    runs.write_status(run_dir, state="finished")
    folder = RunLayout(run_dir).mask_dir(3)
    folder.mkdir(parents=True)
    Image.new("RGB", (128, 128), (0, 255, 255)).save(folder / "0013.png")
    image, caption = gallery.picture(QUICK["segmentation"], runs.list_runs(tmp_path))
    assert caption == f"latest: {run_dir.name}"
    with Image.open(io.BytesIO(image)) as im:
        assert im.size == gallery.THUMB and im.getpixel((5, 5)) == (0, 255, 255)


def following(run_dir, until_ready: bool = False, then: str = ""):
    """A page that follows the quick demo `run_dir` as gallery.start leaves it (once)."""
    from streamlit.testing.v1 import AppTest

    script = (
        "import streamlit as st\n"
        "from dashboard.components import gallery\n"
        "if 'seeded' not in st.session_state:\n"
        f"    st.session_state.update(seeded=True, quick_watch=[{str(run_dir)!r}])\n"
        f"gallery.announce(until_ready={until_ready})\n{then}\n"
    )
    return AppTest.from_string(script, default_timeout=60)


def test_a_demo_whose_first_checkpoint_is_already_there_shows_its_progress_first(finished_run):
    """A fast demo (its first checkpoint written before the page follows it) still shows
    something live at once: the first tick draws the progress line, the next draws the page."""
    at = following(finished_run).run()
    assert not at.exception
    [bar] = at.get("progress")
    assert f"Quick demo: {finished_run.name} training" in bar.proto.text
    assert "drawing the page" in bar.proto.text
    at.run()  # the next tick: the checkpoint is there, so the whole page is drawn, once
    assert not at.exception
    assert "quick_watch" not in at.session_state and not at.get("progress")


def test_a_quick_demos_time_is_learned_from_its_own_finished_run(runs_dir):
    """In an empty folder a card says the time measured for its demo on the project's
    machine; once the demo has finished here, the time it took here (start to end)."""
    import contextlib
    import io

    from dashboard.components import timing
    from engine.execution import executor
    from engine.store import runs

    demo = QUICK["inside"]
    assert timing.quick_seconds(demo) == demo.seconds
    cfg = demo.config()
    cfg.name = demo.name
    run_dir = runs.create_run(cfg, runs_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        executor.execute(run_dir)
    timing._finished.clear()
    status = runs.read_status(run_dir)
    assert timing.quick_seconds(demo) == round(status["ended"] - status["started"])
    assert timing.quick_seconds(QUICK["segmentation"]) == QUICK["segmentation"].seconds


def test_a_demo_not_yet_started_says_it_is_starting_and_waits_for_its_progress(runs_dir):
    """A run created but not yet running, with nothing ahead of it: "starting", not "queued";
    the page is not redrawn before the progress line has been shown."""
    from engine.config import RunConfig
    from engine.store import runs

    run_dir = runs.create_run(RunConfig(name="not launched"), runs_dir)
    at = following(run_dir).run()
    assert not at.exception
    assert [c.value for c in at.caption] == ["Quick demo: starting…"]
    assert "quick_follow_drawn" not in at.session_state
    assert at.session_state["quick_watch"] == [str(run_dir)]
    # A page that asks for it draws nothing below until the demo's first checkpoint.
    waiting = following(run_dir, until_ready=True, then="st.write('the rest of the page')").run()
    assert not waiting.exception
    assert not [m for m in waiting.markdown if m.value == "the rest of the page"]
