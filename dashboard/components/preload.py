"""The browser's first drawing of a page's charts and widgets, moved to the Home page's idle time.

Streamlit's front end loads the code of each kind of element (plotly's chart, a number input,
a select box...) the first time a page of the session shows one, and evaluates it then: on the
2-core machine the Train page's first drawing spent 1.8 s evaluating those modules (1.2 s of
it plotly's), with the Home demo's first chart point waiting behind them. `preload()` imports
the same modules in the same document while Home is read: from two seconds after Home is
drawn (a click before that waits for nothing), one module per idle moment of the browser,
plotly's last. A module that this version of Streamlit does not ship is left out; a failed
import only leaves the cost where it was.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import streamlit as st

# The element modules the Train page (and the quick demos' pages) draw with, by the names of
# their chunks in Streamlit's build (static/js/<Name>.<hash>.js); the small ones first, plotly's
# (1.2 s to evaluate here) last.
CHUNKS = ("Progress", "Metric", "Checkbox", "Radio", "Selectbox", "NumberInput", "TextInput",
          "Slider", "DownloadButton", "remark-emoji", "StreamlitSyntaxHighlighter",
          "PlotlyChart")  # fmt: skip
# Nothing is imported in the first seconds on Home: a click then (the page drawn, the button
# pressed at once) would wait behind the imports of modules its page may not need yet.
DELAY_MS = 2000

# One module per idle moment of the browser, so a click waits behind one at most.
_SCRIPT = """<script>
(() => {
  if (window.__workbenchPreloaded) return;
  window.__workbenchPreloaded = true;
  const main = [...document.querySelectorAll('script[type="module"][src]')]
    .find((s) => /\\/static\\/js\\/index\\.[^/]*\\.js$/.test(s.src));
  if (!main) return;
  const base = main.src.slice(0, main.src.lastIndexOf("/") + 1);
  const files = FILES;
  const idle = (cb) => (window.requestIdleCallback
    ? window.requestIdleCallback(cb, { timeout: 1000 }) : setTimeout(cb, 50));
  const next = () => {
    const f = files.shift();
    if (f) import(base + f).catch(() => {}).finally(() => idle(next));
  };
  setTimeout(() => idle(next), DELAY_MS);
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
        script = _SCRIPT.replace("FILES", json.dumps(list(files)))
        st.html(script.replace("DELAY_MS", str(DELAY_MS)), unsafe_allow_javascript=True)
