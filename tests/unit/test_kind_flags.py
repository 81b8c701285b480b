"""The command line's kind flags are generated from KINDS: every Flag names a field of its
kind's config, is on `train`'s parser, and is refused for another kind in one message."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from engine.cli.main import build_parser
from engine.experiments.kinds import KINDS

ALL_FLAGS = [(k, f) for k in KINDS.values() for f in k.flags]


@pytest.mark.parametrize("kind, flag", ALL_FLAGS, ids=[f.option for _, f in ALL_FLAGS])
def test_each_flag_sets_a_field_of_its_kind_and_is_on_the_parser(kind, flag):
    assert flag.field in {f.name for f in dataclasses.fields(kind.config)}
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert flag.option in train._option_string_actions


@pytest.mark.parametrize("kind", [k for k in KINDS.values() if k.flags], ids=lambda k: k.name)
def test_a_kind_s_flag_given_to_another_kind_is_refused_naming_them_all(kind, capsys):
    from engine.cli.main import main

    other = "classify" if kind.name != "classify" else "transfer"
    f = kind.flags[0]
    value = [] if f.switch is not None or f.both_ways else [{int: "3", float: "0.5"}.get(
        f.type, (f.choices or ("x",))[0])]  # fmt: skip
    assert main(["train", "--kind", other, f.option, *value]) == 2
    err = capsys.readouterr().err
    names = [g.shown for g in kind.flags]
    assert err == f"error: {', '.join(names[:-1])} and {names[-1]} need --kind {kind.name}\n"


def test_no_view_makes_a_run_or_a_group_itself():
    """Every page starts runs through engine.execution.start (start_run / start_group)."""
    views = Path(__file__).resolve().parents[2] / "dashboard" / "views"
    for page in views.glob("*.py"):
        text = page.read_text()
        assert not re.search(r"\b(create_run|create_group|new_run_from)\(", text), page.name
