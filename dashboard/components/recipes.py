"""The course recipe of a page: its section of docs/course-experiments.md (the data layout the
course hands out, the exact command, the budget, our result beside the assignment's), shown
in an expander on the page it belongs to."""

from __future__ import annotations

import re

import streamlit as st

from engine.core.settings import REPO_ROOT

RECIPES = REPO_ROOT / "docs" / "course-experiments.md"


def sections(text: str) -> dict[str, str]:
    """The doc's `## ` sections by title, each with its text up to the next `## `."""
    out: dict[str, str] = {}
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = part.partition("\n")
        out[title.strip()] = body.strip()
    return out


def recipe_text(title: str) -> str | None:
    """The section called `title`, or None when the doc or the section is missing."""
    try:
        return sections(RECIPES.read_text(encoding="utf-8")).get(title)
    except OSError:
        return None


def show(*titles: str) -> None:
    """An expander per recipe: 'As the course runs it: <title>'."""
    for title in titles:
        body = recipe_text(title)
        if body is None:  # never take the page down for a missing doc
            st.caption(f"(recipe '{title}' not found in {RECIPES.name})")
            continue
        with st.expander(f"As the course runs it: {title}"):
            st.markdown(body)
            st.caption(f"From {RECIPES.relative_to(REPO_ROOT)}")
