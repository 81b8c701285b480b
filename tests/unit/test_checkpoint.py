import os

import pytest
import torch

from engine.train import CheckpointError, load_checkpoint, save_checkpoint


def _state(value: float) -> dict:
    return {
        "model": {"w": torch.full((3, 4), value), "b": torch.arange(4)},
        "progress": {"epoch": 2, "best_val_acc": 0.5},
        "rng": {"torch": torch.get_rng_state()},
    }


def test_round_trip(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"  # the folder is created on demand
    save_checkpoint(path, _state(1.5))
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["w"], torch.full((3, 4), 1.5))
    assert torch.equal(state["model"]["b"], torch.arange(4))
    assert state["progress"] == {"epoch": 2, "best_val_acc": 0.5}
    assert torch.equal(state["rng"]["torch"], torch.get_rng_state())


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failing_write_keeps_the_previous_file_and_leaves_no_temp_file(
    tmp_path, monkeypatch, error
):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1.0))
    before = path.read_bytes()

    def half_written_then_fail(obj, f, *args, **kwargs):
        f.write(before[: len(before) // 2])  # some bytes reach the temp file first
        raise error

    monkeypatch.setattr(torch, "save", half_written_then_fail)
    with pytest.raises(type(error)):
        save_checkpoint(path, _state(2.0))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.pt"]
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((3, 4), 1.0))


def test_truncated_checkpoint_raises_naming_the_file(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1.0))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


def test_garbage_checkpoint_raises_naming_the_file(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(os.urandom(512))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


def test_missing_checkpoint_raises_naming_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="last.pt does not exist"):
        load_checkpoint(tmp_path / "last.pt")


def test_a_tensor_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a workbench checkpoint"):
        load_checkpoint(path)


class _TouchesAFile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_loading_is_weights_only_and_never_runs_code(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "payload": _TouchesAFile(marker)}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)
    assert not marker.exists()
