"""Home, Runs and Train with a run folder whose files hold anything (issue 19): each page
draws without an exception, lists the healthy run beside the damaged one, and shows the
damaged one as damaged with the reason, naming the file."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.store import runs
from engine.store.layout import RunLayout
from tests.support.pages import page

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=8,
)  # fmt: skip
FIELDS = ("state", "pid", "created", "summary", "error", "classes", "total_steps", "step",
          "tags", "title", "heartbeat", "host", "model_info", "data")  # fmt: skip

# The cases the adversarial pass found, each a status or config field that broke a page.
KNOWN = [
    ("status", {"state": "finished", "pid": "abc", "created": 1e300}),
    ("status", {"state": "finished", "summary": {"test_acc": "high", "best_val_acc": [1]}}),
    ("status", {"state": "running", "pid": True, "total_steps": "many"}),
    ("status", {"state": ["finished"], "tags": "a,b", "title": 3}),
    ("config", {"kind": ["classify"]}),
    ("config", {"model": "small_cnn", "data": 3}),
]


def _damage(run_dir, which: str, content) -> None:
    path = getattr(RunLayout(run_dir), which)
    if which == "status":  # on top of the real status: the damage is the field, not the rest
        base = json.loads(path.read_text())
        content = {**base, **content} if isinstance(content, dict) else content
    path.write_text(json.dumps(content))


def _check_pages(runs_dir, damaged, healthy) -> None:
    home = page("home").run()
    assert not home.exception, home.exception
    table = home.dataframe[0].value.set_index("run")
    assert healthy.name in table.index and damaged.name in table.index
    listed = runs.list_runs(runs_dir)
    state = {r.run_id: r.state for r in listed}[damaged.name]
    if state == "damaged":
        assert "damaged" in table.loc[damaged.name, "status"]
        note = table.loc[damaged.name, "note"]
        assert "status.json" in note or "config.json" in note
    rp = page("runs").run()
    assert not rp.exception, rp.exception
    rows = rp.dataframe[0].value.set_index("run")
    assert {healthy.name, damaged.name} <= set(rows.index)
    if state == "damaged":
        assert rows.loc[damaged.name, "state"] == "damaged"
        assert ".json" in rows.loc[damaged.name, "note"]
    train = page("train").run()
    assert not train.exception, train.exception
    train.selectbox(key="run_picker").set_value(damaged.name).run()
    assert not train.exception, train.exception
    if state == "damaged":
        assert any("damaged" in e.value for e in train.error)


@pytest.fixture
def two(runs_dir, finished_run):
    other = runs_dir / (finished_run.name[:-6] + "ffffff")
    shutil.copytree(finished_run, other)
    return finished_run, other


@pytest.mark.parametrize("which, content", KNOWN)
def test_known_hostile_fields_show_as_damaged_and_hide_nothing(runs_dir, two, which, content):
    damaged, healthy = two
    _damage(damaged, which, content)
    _check_pages(runs_dir, damaged, healthy)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(field=st.sampled_from(FIELDS), value=JSON)
def test_any_status_field_leaves_the_pages_working(runs_dir, two, field, value):
    damaged, healthy = two
    _damage(damaged, "status", {field: value})
    _check_pages(runs_dir, damaged, healthy)
