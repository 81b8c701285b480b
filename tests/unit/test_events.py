import json

import pytest

from engine.store.events import drop_events_after
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


@pytest.mark.parametrize("line", ["[1, 2]", '{"foo": 1}', '"x"', "3", "null", '{"name": "a"}'])
def test_json_that_is_not_an_event_is_skipped(tmp_path, line):
    path = tmp_path / "metrics.jsonl"
    path.write_text(f'{{"name": "a", "value": 1}}\n{line}\n{{"name": "b", "value": 2}}\n')
    events, offset = read_events(path)
    assert [e["name"] for e in events] == ["a", "b"]
    assert offset == path.stat().st_size


# --- drop_events_after: what a resumed run forgets -------------------------------------------


def _log(path, events):
    """A metrics file as a run writes it: steps 1, 5, 10 in epoch 1 (10 steps an epoch)."""
    with EventLog(path) as log:
        for name, split, epoch, step in events:
            log.emit(name, 0.5, split=split, epoch=epoch, step=step)


EPOCH_1 = [("loss", "train", 1, 1), ("loss", "train", 1, 5), ("loss", "train", 1, 10)] + [
    (name, split, 1, 10)
    for name, split in (("loss", "train_epoch"), ("acc", "train"), ("loss", "val"), ("acc", "val"))
]
MID_EPOCH_2 = [("loss", "train", 2, 15)]
EPOCH_2_END = [("loss", "train", 2, 20), ("loss", "val", 2, 20), ("acc", "val", 2, 20)]
TEST = [("acc", "test", 2, 20), ("loss", "test", 2, 20)]


def _keys(path):
    return [(e["name"], e["split"], e["epoch"], e["step"]) for e in read_events(path)[0]]


@pytest.mark.parametrize(
    "global_step, epoch, kept",
    [
        (10, 1, EPOCH_1),  # saved at the end of epoch 1
        (15, 1, EPOCH_1 + MID_EPOCH_2),  # stopped in epoch 2 just after step 15
        (12, 1, EPOCH_1),  # stopped at step 12: the later step 15 is replayed
        (10, 0, EPOCH_1[:3]),  # stopped after epoch 1's last batch, before its evaluation
        (0, 0, []),  # no checkpoint: everything is replayed
        (20, 2, EPOCH_1 + MID_EPOCH_2 + EPOCH_2_END),  # finished, resumed for more epochs
    ],
    ids=[
        "end-of-epoch-1",
        "mid-epoch-2",
        "before-a-logged-step",
        "before-evaluation",
        "none",
        "finished",
    ],
)
def test_drop_events_after_keeps_only_what_the_checkpoint_has_seen(
    tmp_path, global_step, epoch, kept
):
    path = tmp_path / "metrics.jsonl"
    _log(path, EPOCH_1 + MID_EPOCH_2 + EPOCH_2_END + TEST)
    with open(path, "a") as f:
        f.write('not json\n{"name": "x"}\n')  # damaged lines go too
    all_events = len(EPOCH_1 + MID_EPOCH_2 + EPOCH_2_END + TEST)
    assert drop_events_after(path, global_step, epoch) == all_events - len(kept)
    assert _keys(path) == kept
    assert path.read_text().endswith("\n") or not kept
    # The values and times of what is kept are untouched.
    assert all(e["value"] == 0.5 and "time" in e for e in read_events(path)[0])


def test_drop_events_after_leaves_a_file_with_nothing_to_drop_alone(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _log(path, EPOCH_1)
    before = path.stat()
    assert drop_events_after(path, 10, 1) == 0
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert drop_events_after(tmp_path / "absent.jsonl", 0, 0) == 0
