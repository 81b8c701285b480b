"""The browser's first drawing of a page's charts and widgets, moved to the Home page's idle time.

Streamlit's front end loads the code of each kind of element (plotly's chart, a number input,
a select box...) the first time a page of the session shows one, and evaluates it then: on the
2-core machine the Train page's first drawing spent 1.8 s evaluating those modules (1.2 s of
it plotly's), with the Home demo's first chart point waiting behind them. `preload()` imports
the same modules in the same document while Home is idle, so the page a click opens finds them
ready. A module that this version of Streamlit does not ship is left out; a failed import only
leaves the cost where it was.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import streamlit as st

# The element modules the Train page (and the quick demos' pages) draw with, by the names of
# their chunks in Streamlit's build (static/js/<Name>.<hash>.js).
CHUNKS = ("PlotlyChart", "Selectbox", "NumberInput", "Checkbox", "TextInput", "Progress",
          "Metric", "DownloadButton", "Slider", "Radio", "StreamlitSyntaxHighlighter",
          "remark-emoji")  # fmt: skip

_SCRIPT = """<script>
(() => {
  if (window.__workbenchPreloaded) return;
  window.__workbenchPreloaded = true;
  const main = [...document.querySelectorAll('script[type="module"][src]')]
    .find((s) => /\\/static\\/js\\/index\\.[^/]*\\.js$/.test(s.src));
  if (!main) return;
  const base = main.src.slice(0, main.src.lastIndexOf("/") + 1);
  const load = () => FILES.forEach((f) => import(base + f).catch(() => {}));
  (window.requestIdleCallback || ((cb) => setTimeout(cb, 300)))(load, { timeout: 1500 });
})();
</script>"""


@functools.cache
def chunk_files() -> tuple[str, ...]:
    """The file names of CHUNKS in the installed Streamlit's build."""
    js = Path(st.__file__).parent / "static" / "static" / "js"
    return tuple(p.name for name in CHUNKS for p in sorted(js.glob(f"{name}.*.js")))


def preload() -> None:
    """Import the element modules in this browser tab while the page is idle (once a tab)."""
    files = chunk_files()
    if files:
        st.html(_SCRIPT.replace("FILES", json.dumps(list(files))), unsafe_allow_javascript=True)
