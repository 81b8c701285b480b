"""The presenter's view, for a projector: a "Focus" toggle that hides the forms, the recipes
and the sidebar and lets the live charts take the screen's width."""

from __future__ import annotations

import streamlit as st

# Streamlit's own test ids: the sidebar, and the main column's maximum width.
_FOCUS_CSS = """
<style>
section[data-testid="stSidebar"], div[data-testid="stSidebarCollapsedControl"] {display: none;}
div[data-testid="stMainBlockContainer"], .block-container {max-width: 100%;
    padding-left: 2rem; padding-right: 2rem;}
</style>
"""


def focus_toggle(page: str) -> bool:
    """The toggle (remembered per page); True when the page should show its charts alone."""
    on = st.toggle("Focus (for a projector)", key=f"focus_{page}",
                   help="hides the forms, the recipes and the sidebar; the live charts take "
                   "the whole width")  # fmt: skip
    if on:
        st.markdown(_FOCUS_CSS, unsafe_allow_html=True)
    return on
