"""The Embeddings page's box selection in a real browser: choose plotly's Box Select in the
scatter's modebar, drag a box over most of the plot with the mouse, and the page reruns to show
the brushed images: "N images selected" and the selection's image grid. Needs Debian's
chromium and playwright (`make test-e2e`)."""

from __future__ import annotations

import re

import pytest

from bench.demo_timing import dashboard
from engine.config import RunConfig
from engine.execution import executor
from engine.store import runs

pytestmark = pytest.mark.e2e
# Streamlit's "Running..." widget is gone when the page's script has finished.
SCRIPT_DONE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
# The "Select by" radio's option for a box or lasso, with how many rows it holds.
BRUSHED = re.compile(r"box / lasso in a scatter \((\d+)\)")
# After the drag: the page has rerun with some rows brushed, or shows an exception.
BRUSH_TAKEN_OR_FAILED = """() => document.querySelector('[data-testid="stException"]')
    || (/box \\/ lasso in a scatter \\([1-9]\\d*\\)/.test(document.body.innerText)
        && !document.querySelector('[data-testid="stStatusWidget"]'))"""
SELECTED = re.compile(r"(\d+) images selected, \d+ of them misclassified")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """A runs folder holding one small finished run with an embedding snapshot per epoch."""
    root = tmp_path_factory.mktemp("runs")
    cfg = RunConfig(name="e2e-embeddings", epochs=2, snapshot_every=1, log_every=2)
    executor.execute(runs.create_run(cfg, root))
    return root


@pytest.fixture(scope="module")
def url(runs_dir):
    """The dashboard over that folder (no prewarming, one thread: the machine is shared)."""
    with pytest.MonkeyPatch.context() as mp:  # `dashboard` passes os.environ on
        mp.setenv("WORKBENCH_PREWARM", "0")
        mp.setenv("OMP_NUM_THREADS", "1")
        with dashboard(runs_dir) as address:
            yield address


def _count(page, pattern: re.Pattern) -> int:
    return int(pattern.search(page.get_by_text(pattern).first.inner_text()).group(1))


def test_a_box_dragged_in_the_scatter_shows_the_selected_images(browser, url, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{url}/embeddings")
        scatter = page.locator(".js-plotly-plot").first  # the first chart: the scatter (PCA)
        scatter.wait_for(timeout=60_000)
        page.get_by_text(BRUSHED).first.wait_for(timeout=30_000)
        page.wait_for_function(SCRIPT_DONE, timeout=30_000)
        assert _count(page, BRUSHED) == 0  # nothing brushed yet (the default: misclassified)

        drag = scatter.locator(".nsewdrag").first
        drag.hover()  # shows the modebar
        # Box Select (a <button> in this plotly.js, an <a> in older ones)
        scatter.locator('.modebar-btn[data-attr="dragmode"][data-val="select"]').click()
        page.wait_for_function(
            "() => document.querySelector('.js-plotly-plot')._fullLayout.dragmode === 'select'",
            timeout=5_000,
        )
        box = drag.bounding_box()
        x0, y0 = box["x"] + box["width"] * 0.15, box["y"] + box["height"] * 0.15
        x1, y1 = box["x"] + box["width"] * 0.85, box["y"] + box["height"] * 0.85
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y1, steps=12)
        page.mouse.up()

        # The app reruns with the brushed rows (the radio follows the brush), or fails.
        page.wait_for_function(BRUSH_TAKEN_OR_FAILED, timeout=30_000)
        errors = page.locator('[data-testid="stException"]')
        assert errors.count() == 0, errors.first.inner_text()
        page.get_by_text(SELECTED).first.wait_for(timeout=30_000)
        page.get_by_text(re.compile(r"^page 1 of \d+")).first.wait_for(timeout=30_000)
        brushed, selected = _count(page, BRUSHED), _count(page, SELECTED)
        assert selected >= 2
        assert selected == brushed  # the caption is the brush's, not the misclassified ones
        radio = page.get_by_role("radio", name=f"box / lasso in a scatter ({brushed})")
        assert radio.is_checked()  # "Select by" followed the brush
        grid = page.locator('[data-testid="stImage"]').filter(has_text=re.compile("^page 1 of"))
        assert grid.locator("img").count() == 1
        grid.scroll_into_view_if_needed()  # Streamlit scrolls its own container, not the page
        page.screenshot(path=str(tmp_path / "embeddings-box-selection.png"))
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        page.close()
