"""Each page shows its course recipe (docs/course-experiments.md): the sections the pages name
exist, each gives a command, the doc is finished, and a page shows its recipe in an expander
(or says it is missing, without taking the page down)."""

from __future__ import annotations

import re

import pytest

from dashboard.components import recipes
from tests.support.pages import APP, page

DOC = recipes.RECIPES.read_text(encoding="utf-8")


def _titles_named_by_pages() -> dict[str, list[str]]:
    out = {}
    for view in sorted((APP / "views").glob("*.py")):
        text = view.read_text(encoding="utf-8")
        if call := re.search(r"recipes\.show\((.*?)\)\n", text, re.S):
            out[view.stem] = re.findall(r"\"([^\"]+)\"", call.group(1))
    return out


def test_every_page_of_a_course_experiment_names_existing_recipes():
    named = _titles_named_by_pages()
    assert {"train", "inside", "ssl", "transfer", "segmentation", "fewshot", "dynamic",
            "longtail"} <= set(named)  # fmt: skip
    sections = recipes.sections(DOC)
    for view, titles in named.items():
        for title in titles:
            assert title in sections, f"{view}.py names a recipe the doc lacks: {title}"


@pytest.mark.parametrize("title", list(recipes.sections(DOC)))
def test_each_recipe_gives_a_command_and_no_internal_names(title):
    body = recipes.sections(DOC)[title]
    assert "python -m engine" in body
    assert not re.search(r"seed ?00\d", body, re.I)


def test_the_doc_is_finished():
    placeholders = re.findall(r"\b(?:AE_[A-Z]+|FEWSHOT_SEEDS|RESPONSE_SCALE|FROZEN_TIMING|"
                              r"ABLATION)\b", DOC)  # fmt: skip
    assert not placeholders


def test_a_page_shows_its_recipe_in_an_expander():
    at = page("dynamic").run()
    assert not at.exception
    labels = [e.label for e in at.expander]
    assert "As the course runs it: ENGN8536 Lab 4: dynamic filters" in labels


def test_a_missing_recipe_is_said_not_raised(monkeypatch, tmp_path):
    monkeypatch.setattr(recipes, "RECIPES", tmp_path / "gone.md")
    assert recipes.recipe_text("ENGN8536 Lab 4: dynamic filters") is None
