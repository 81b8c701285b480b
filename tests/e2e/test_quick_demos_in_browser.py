"""Home's gallery in a real browser: from an empty runs folder every card is there; a quick
demo's button opens its page, says what it started and follows it live; a second click on
Home finds the first run instead of starting another. Needs Debian's chromium and playwright
(`make test-e2e`)."""

from __future__ import annotations

import re
import time

import pytest

from bench.demo_timing import dashboard
from engine.execution import launcher
from engine.execution.quick import QUICK
from engine.store import runs
from tests.support.helpers import wait_until_ended

pytestmark = pytest.mark.e2e
# Streamlit's "Running..." widget is gone when the page's script has finished.
SCRIPT_DONE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
QUICK_BUTTON = re.compile(r"Quick demo · about")  # the first card's: training and embeddings


def test_a_quick_demo_opens_its_page_live_and_a_second_click_starts_nothing(browser, tmp_path):
    runs_dir = tmp_path / "runs"
    with dashboard(runs_dir) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        page.get_by_text("Every experiment, one click away").wait_for(timeout=60_000)
        for demo in QUICK.values():  # every card, from an empty runs folder
            page.get_by_text(demo.title, exact=True).first.wait_for(timeout=10_000)
        page.screenshot(path=str(tmp_path / "home-empty.png"))
        button = page.get_by_role("button", name=QUICK_BUTTON).first
        clicked = time.monotonic()
        button.click()  # the first card: training and embeddings, on the Train page
        page.get_by_text("Training and embeddings: started").wait_for(timeout=30_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        live_s = time.monotonic() - clicked
        (run,) = runs.list_runs(runs_dir)
        try:
            assert live_s < 30  # the page and its live chart, not a wait for the end
            page.goto(url)
            page.get_by_text("Every experiment, one click away").wait_for(timeout=60_000)
            page.wait_for_function(SCRIPT_DONE, timeout=60_000)  # the click must reach it
            button = page.get_by_role("button", name=QUICK_BUTTON).first
            still_running = runs.is_active(run.path)
            button.click()
            page.get_by_text("Training and embeddings:").first.wait_for(timeout=30_000)
            if still_running:  # (a fast machine may have finished it: then a new one is right)
                assert len(runs.list_runs(runs_dir)) == 1  # found, not started again
                page.get_by_text("already started").first.wait_for(timeout=10_000)
        finally:
            launcher.stop(run.path)
            wait_until_ended(run.path, 60)
