"""Every quick demo but the first card's (test_quick_demos_in_browser.py follows that one):
from an empty runs folder, its card's button on Home starts it, opens its page, says what it
started and shows it live (the progress line that follows it, or a chart) within seconds;
then every run it started is stopped. One dashboard per demo: its runs folder is fixed when
it starts. Needs Debian's chromium and playwright (`make test-e2e`)."""

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
QUICK_BUTTON = re.compile(r"Quick demo · about")
# gallery._follow's progress line, drawn every second until the demo's first checkpoint.
FOLLOWING = re.compile(r"Quick demo: \S+ training, epoch \d+")
LIVE_S = 5  # click to the live view (the bound)
DEMOS = list(QUICK.values())[1:]  # the first card: test_quick_demos_in_browser.py


def _stop_everything(runs_dir) -> None:
    """Stop every active run in the folder (the queued ones first, so none starts meanwhile)
    and wait for each to end; again for any that became active while the others stopped."""
    for _ in range(3):
        active = [r for r in runs.list_runs(runs_dir) if runs.is_active(r.path)]
        if not active:
            return
        active.sort(key=lambda r: runs.read_status(r.path).get("state") != "queued")
        for r in active:
            launcher.stop(r.path)
        for r in active:
            wait_until_ended(r.path, 60)


@pytest.mark.parametrize("demo", DEMOS, ids=[d.key for d in DEMOS])
def test_a_quick_demo_starts_and_its_page_is_live_within_seconds(
    demo, browser, tmp_path, monkeypatch
):
    runs_dir = tmp_path / "runs"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # `dashboard` passes os.environ on
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    try:
        with dashboard(runs_dir) as url:
            try:
                page.goto(url)
                page.get_by_text("Every experiment, one click away").wait_for(timeout=60_000)
                card = page.locator(f".st-key-quick_{demo.key}")  # the button's key: quick_<key>
                button = card.get_by_role("button", name=QUICK_BUTTON)
                button.wait_for(timeout=60_000)
                page.wait_for_function(SCRIPT_DONE, timeout=60_000)  # the click must reach it
                assert runs.list_runs(runs_dir) == []
                clicked = time.monotonic()
                button.click()
                page.get_by_text(f"{demo.title}: started (").wait_for(timeout=30_000)
                started_s = time.monotonic() - clicked
                assert runs.list_runs(runs_dir), "the click made no run folder"
                live = page.get_by_text(FOLLOWING).or_(page.locator(".js-plotly-plot")).first
                live.wait_for(timeout=60_000)
                live_s = time.monotonic() - clicked
                what = "progress line" if FOLLOWING.search(live.inner_text()) else "chart"
                print(f"{demo.key}: started {started_s:.1f} s, live ({what}) {live_s:.1f} s")
                page.screenshot(path=str(tmp_path / f"{demo.key}-live.png"))
                errors = page.locator('[data-testid="stException"]')
                assert errors.count() == 0, errors.first.inner_text()
                assert live_s < LIVE_S, f"{demo.key}: live after {live_s:.1f} s ({what})"
            finally:
                _stop_everything(runs_dir)
    finally:
        page.close()
