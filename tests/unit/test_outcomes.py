"""engine.store.outcomes: a run's item-by-item test outcomes, written and read back checked."""

import json

import pytest

from engine.store.layout import RunLayout
from engine.store.outcomes import Outcomes, read_outcomes, write_outcomes
from engine.store.runs import RunError


def accuracy():
    return Outcomes("accuracy", ids=[4, 9, 2, 17], correct=[1, 0, 1, 1])


def segmentation():
    return Outcomes(
        "miou",
        ids=[3, 5],
        tp=[[10, 0, 4], [7, 2, 0]],
        predicted=[[12, 1, 6], [9, 3, 0]],
        actual=[[11, 2, 5], [8, 2, 1]],
    )


def episodes(shots=5):
    return Outcomes("episodes", episode_acc=[0.8, 0.6, 1.0, 0.0, 0.55], shots=shots)


# --- round trips ----------------------------------------------------------------------------
def test_accuracy_round_trip(tmp_path):
    write_outcomes(tmp_path, accuracy())
    back = read_outcomes(tmp_path)
    assert back == accuracy()
    assert len(back) == 4


def test_accuracy_from_bools_is_stored_as_zero_or_one(tmp_path):
    write_outcomes(tmp_path, Outcomes("accuracy", ids=[1, 2, 3], correct=[True, False, True]))
    assert read_outcomes(tmp_path).correct == [1, 0, 1]
    stored = json.loads(RunLayout(tmp_path).test_outcomes.read_text())
    assert stored["correct"] == [1, 0, 1]


def test_miou_round_trip(tmp_path):
    write_outcomes(tmp_path, segmentation())
    back = read_outcomes(tmp_path)
    assert back == segmentation()
    assert len(back) == 2


def test_episodes_round_trip(tmp_path):
    write_outcomes(tmp_path, episodes())
    back = read_outcomes(tmp_path)
    assert back.kind == "episodes"
    assert back.shots == 5
    assert back.episode_acc == pytest.approx([0.8, 0.6, 1.0, 0.0, 0.55])
    assert len(back) == 5
    assert back.ids == []


def test_outcomes_live_in_the_run_folder(tmp_path):
    write_outcomes(tmp_path, accuracy())
    assert (tmp_path / "test_outcomes.json").is_file()
    assert RunLayout(tmp_path).test_outcomes == tmp_path / "test_outcomes.json"


def test_no_file_reads_as_none(tmp_path):
    assert read_outcomes(tmp_path) is None


# --- damaged files --------------------------------------------------------------------------
def write_raw(run_dir, d):
    path = RunLayout(run_dir).test_outcomes
    path.write_text(d if isinstance(d, str) else json.dumps(d))
    return path


def assert_damaged(run_dir, d, words=""):
    path = write_raw(run_dir, d)
    with pytest.raises(RunError) as e:
        read_outcomes(run_dir)
    message = str(e.value)
    assert str(path) in message
    assert "\n" not in message
    assert words in message
    return message


def test_not_json_is_a_run_error(tmp_path):
    assert_damaged(tmp_path, "{not json", "damaged")


def test_a_json_list_is_a_run_error(tmp_path):
    assert_damaged(tmp_path, "[1, 2, 3]", "damaged")


def test_unknown_kind_is_a_run_error(tmp_path):
    assert_damaged(tmp_path, {"kind": "f1", "ids": [1], "correct": [1]}, "'kind'")


def test_missing_kind_is_a_run_error(tmp_path):
    assert_damaged(tmp_path, {"ids": [1], "correct": [1]}, "'kind'")


def test_correct_holding_a_two_is_a_run_error(tmp_path):
    assert_damaged(tmp_path, {"kind": "accuracy", "ids": [1, 2], "correct": [1, 2]}, "'correct'")


def test_correct_shorter_than_ids_is_a_run_error(tmp_path):
    assert_damaged(tmp_path, {"kind": "accuracy", "ids": [1, 2, 3], "correct": [1, 0]}, "'correct'")


def test_a_bool_in_ids_is_a_run_error(tmp_path):
    assert_damaged(tmp_path, {"kind": "accuracy", "ids": [1, True], "correct": [1, 0]}, "'ids'")


def test_a_float_in_ids_is_a_run_error(tmp_path):
    assert_damaged(tmp_path, {"kind": "accuracy", "ids": [1, 2.5], "correct": [1, 0]}, "'ids'")


def test_ids_not_a_list_is_a_run_error(tmp_path):
    assert_damaged(tmp_path, {"kind": "accuracy", "ids": "1,2", "correct": [1, 0]}, "'ids'")


def test_tp_with_a_row_too_few_is_a_run_error(tmp_path):
    d = {
        "kind": "miou",
        "ids": [3, 5],
        "tp": [[1, 0]],
        "predicted": [[1, 0], [1, 1]],
        "actual": [[1, 0], [1, 1]],
    }
    assert_damaged(tmp_path, d, "'tp'")


def test_predicted_with_a_row_too_many_is_a_run_error(tmp_path):
    d = {
        "kind": "miou",
        "ids": [3],
        "tp": [[1, 0]],
        "predicted": [[1, 0], [1, 1]],
        "actual": [[1, 0]],
    }
    assert_damaged(tmp_path, d, "'predicted'")


def test_rows_of_one_key_differing_in_length_is_a_run_error(tmp_path):
    d = {
        "kind": "miou",
        "ids": [3, 5],
        "tp": [[1, 0], [1, 0]],
        "predicted": [[1, 0], [1, 1, 4]],
        "actual": [[1, 0], [1, 1]],
    }
    assert_damaged(tmp_path, d, "'predicted'")


def test_counts_of_different_class_numbers_across_keys_is_a_run_error(tmp_path):
    d = {
        "kind": "miou",
        "ids": [3, 5],
        "tp": [[1, 0, 2], [1, 0, 2]],
        "predicted": [[1, 0], [1, 1]],
        "actual": [[1, 0], [1, 1]],
    }
    assert_damaged(tmp_path, d)


def test_negative_pixel_counts_are_a_run_error(tmp_path):
    d = {
        "kind": "miou",
        "ids": [3],
        "tp": [[-4, 0]],
        "predicted": [[1, 0]],
        "actual": [[1, 0]],
    }
    assert_damaged(tmp_path, d)


def test_episode_accuracy_above_one_is_a_run_error(tmp_path):
    assert_damaged(
        tmp_path, {"kind": "episodes", "shots": 5, "episode_acc": [0.5, 1.2]}, "'episode_acc'"
    )


def test_episode_accuracy_below_zero_is_a_run_error(tmp_path):
    assert_damaged(
        tmp_path, {"kind": "episodes", "shots": 5, "episode_acc": [-0.1]}, "'episode_acc'"
    )


def test_missing_shots_is_a_run_error(tmp_path):
    assert_damaged(tmp_path, {"kind": "episodes", "episode_acc": [0.5, 0.7]}, "'shots'")


def test_bool_shots_is_a_run_error(tmp_path):
    assert_damaged(tmp_path, {"kind": "episodes", "shots": True, "episode_acc": [0.5]}, "'shots'")


# --- same_items -----------------------------------------------------------------------------
def test_same_ids_are_the_same_items():
    other = Outcomes("accuracy", ids=[4, 9, 2, 17], correct=[0, 0, 0, 0])
    assert accuracy().same_items(other)
    assert other.same_items(accuracy())


def test_different_ids_are_not_the_same_items():
    other = Outcomes("accuracy", ids=[4, 9, 2, 18], correct=[1, 0, 1, 1])
    assert not accuracy().same_items(other)
    shorter = Outcomes("accuracy", ids=[4, 9, 2], correct=[1, 0, 1])
    assert not accuracy().same_items(shorter)


def test_different_kinds_are_not_the_same_items():
    # the same ids, one scored by accuracy and one by mIoU
    seg = segmentation()
    acc = Outcomes("accuracy", ids=list(seg.ids), correct=[1, 1])
    assert not acc.same_items(seg)
    assert not seg.same_items(acc)


def test_episodes_at_different_shots_are_not_the_same_items():
    assert episodes(5).same_items(episodes(5))
    assert not episodes(5).same_items(episodes(1))


def test_a_different_number_of_episodes_is_not_the_same_items():
    fewer = Outcomes("episodes", episode_acc=[0.5, 0.5], shots=5)
    assert not episodes(5).same_items(fewer)
