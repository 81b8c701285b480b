"""The whole app in a real browser: click "Start the demo", watch the live chart appear and
the run finish, then visit every page. Needs Debian's chromium and playwright (`make test-e2e`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench.demo_timing import dashboard, run_demo
from engine.store.layout import RunLayout

pytestmark = pytest.mark.e2e


@pytest.fixture
def shots(tmp_path):
    """Where the screenshots go: $WORKBENCH_E2E_SCREENSHOTS, or the test's own folder (kept
    when the test fails, to see what the browser saw)."""
    folder = Path(os.environ.get("WORKBENCH_E2E_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_demo_trains_live_and_every_page_renders(browser, tmp_path, shots):
    started = time.monotonic()
    runs_dir = tmp_path / "runs"
    with dashboard(runs_dir) as url:
        result = run_demo(url, runs_dir, browser, timeout_s=180)
        assert result["state"] == "finished"
        assert result["test_acc"] >= 0.95
        assert result["exceptions_shown"] == 0
        assert result["first_point_s"] < result["finished_s"]  # the chart was live, not a replay
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        for path, text in [
            ("runs", "Click a column to sort"),
            ("embeddings", "Inspect a point"),
            ("confusion", "validation images right"),
            ("transfer", "No comparisons yet"),
            ("inside", "Top-5 predictions"),
            ("dynamic", "No dynamic-filter run has a checkpoint yet"),
            ("segmentation", "No segmentation runs yet"),
            ("fewshot", "No few-shot run has a checkpoint yet"),
            ("ssl", "No self-supervised run yet"),
            ("longtail", "No long-tail comparison yet"),
            ("", "Start the demo"),
        ]:
            page.goto(f"{url}/{path}")
            page.get_by_text(text).first.wait_for(timeout=120_000)
            page.screenshot(path=str(shots / f"{path or 'home'}.png"), full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0, path
        # The epoch slider of the Embeddings page moves the scatter to another snapshot.
        [run_dir] = [d for d in runs_dir.iterdir() if d.is_dir()]
        epochs = RunLayout(run_dir).embedding_epochs()
        assert len(epochs) >= 2
        page.goto(f"{url}/embeddings")
        page.get_by_text(f"epoch {epochs[-1]}: ").first.wait_for(timeout=120_000)
        slider = page.locator('[data-testid="stSlider"]').filter(has_text="Snapshot epoch")
        slider.get_by_role("slider").focus()
        page.keyboard.press("Home")  # to the first snapshot
        page.get_by_text(f"epoch {epochs[0]}: ").first.wait_for(timeout=60_000)
        assert page.get_by_text(f"epoch {epochs[-1]}: ").count() == 0
        page.screenshot(path=str(shots / "embeddings-first-epoch.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0
        # A click on a confusion-matrix cell (row 0, column 0) shows that cell's images.
        page.goto(f"{url}/confusion")
        page.get_by_text("with Grad-CAM of the best").first.wait_for(timeout=120_000)
        box = page.locator(".js-plotly-plot").first.locator(".nsewdrag").first.bounding_box()
        x, y = box["x"] + box["width"] * 0.05, box["y"] + box["height"] * 0.05
        page.mouse.move(x, y)
        page.mouse.click(x, y)
        page.get_by_text("of class 0 predicted as 0").first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "confusion-cell.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.close()
    print(f"\nthe browser walk took {time.monotonic() - started:.1f} s; screenshots in {shots}")


def test_a_deep_link_opened_first_on_a_fresh_server_gets_the_app_navigation(browser, tmp_path):
    # With a pages/ folder, Streamlit ran a fresh server's first request without app.py;
    # the pages live in views/, so every request goes through app.py's st.navigation.
    with dashboard(tmp_path / "runs") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/transfer")
        page.get_by_text("No comparisons yet").first.wait_for(timeout=120_000)
        nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
        assert "Confusion matrix" in nav and "Transfer" in nav and "app" not in nav.split()
        assert page.locator('[data-testid="stException"]').count() == 0
        page.close()
