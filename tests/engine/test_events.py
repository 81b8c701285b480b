import json

import pytest

from engine.train import EventLog, read_events


def _strict(line: str) -> dict:
    """json.loads that refuses NaN / Infinity, as browsers' JSON.parse does."""

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(line, parse_constant=refuse)


def test_one_json_object_per_line(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"  # the folder is created on demand
    with EventLog(path) as log:
        log.emit("loss", 0.5, split="train", epoch=1, step=5)
        log.emit("acc", 1, split="val", epoch=1, step=10)
    text = path.read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == 2
    first, second = (_strict(line) for line in lines)
    assert {k: first[k] for k in ("name", "value", "split", "epoch", "step")} == {
        "name": "loss",
        "value": 0.5,
        "split": "train",
        "epoch": 1,
        "step": 5,
    }
    assert isinstance(first["time"], float)
    assert second["value"] == 1.0 and isinstance(second["value"], float)


def test_reopening_appends(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with EventLog(path) as log:
        log.emit("loss", 1.0)
    with EventLog(path) as log:  # a resumed run appends to the same file
        log.emit("loss", 2.0)
    events, _ = read_events(path)
    assert [e["value"] for e in events] == [1.0, 2.0]


def test_read_continues_from_the_offset_and_skips_a_partial_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with EventLog(path) as log:
        log.emit("loss", 1.0, step=1)
        log.emit("loss", 0.9, step=2)
    events, offset = read_events(path)
    assert [e["step"] for e in events] == [1, 2]
    assert offset == path.stat().st_size

    # A writer caught half-way through a line: nothing new is returned, the offset stays.
    with open(path, "a") as f:
        f.write('{"name": "loss", "value": 0.8, "st')
    events, same = read_events(path, offset)
    assert events == [] and same == offset

    with open(path, "a") as f:
        f.write('ep": 3}\n{"name": "loss", "value": 0.7, "step": 4}\n')
    events, end = read_events(path, offset)
    assert [e["step"] for e in events] == [3, 4]
    assert end == path.stat().st_size
    assert read_events(path, end) == ([], end)


def test_a_damaged_line_costs_only_that_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"name": "a", "value": 1}\nnot json\n{"name": "b", "value": 2}\n')
    events, _ = read_events(path)
    assert [e["name"] for e in events] == ["a", "b"]


def test_missing_file_reads_as_no_events(tmp_path):
    assert read_events(tmp_path / "absent.jsonl", 17) == ([], 17)


@pytest.mark.parametrize(
    "value, label", [(float("nan"), "nan"), (float("inf"), "inf"), (float("-inf"), "-inf")]
)
def test_nonfinite_values_become_null_with_a_marker(tmp_path, value, label):
    path = tmp_path / "metrics.jsonl"
    with EventLog(path) as log:
        log.emit("loss", value, split="train", step=3)
    (line,) = path.read_text().splitlines()
    event = _strict(line)  # still valid, standard JSON
    assert event["value"] is None and event["nonfinite"] == label
    assert read_events(path)[0] == [event]


def test_close_is_idempotent(tmp_path):
    log = EventLog(tmp_path / "m.jsonl")
    log.close()
    log.close()
