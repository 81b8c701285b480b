"""Early stopping on the validation loss (RunConfig.patience, Trainer.patience), its state in
checkpoints, and checkpoints of cheap epochs written at most every interval."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.core.errors import CheckpointError
from engine.data import BatchLoader, ImageSet
from engine.train import EventLog, Trainer, load_checkpoint, read_events
from engine.train.checkpoint import check_training_checkpoint, save_checkpoint
from engine.train.tasks import EvalResult

# --- early stopping ------------------------------------------------------------------------------

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def _images(n: int, seed: int) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 256, (n, 3, 8, 8), generator=g).to(torch.uint8)
    return ImageSet(images, labels, torch.arange(n))


def _trainer(tmp_path, epochs=10, patience=2, lr=0.0) -> Trainer:
    """A linear model (no batch norm: nothing changes in train mode) under SGD with lr 0: the
    validation loss is the same every epoch, so it never improves after the first."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    return Trainer(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        train_loader=BatchLoader(_images(32, 0), 8, MEAN, STD, shuffle=True, seed=1),
        val_loader=BatchLoader(_images(16, 1), 8, MEAN, STD),
        epochs=epochs,
        patience=patience,
        events=EventLog(tmp_path / "metrics.jsonl"),
        checkpoint_dir=tmp_path / "checkpoints",
    )


def _events(tmp_path, name, split):
    return [e for e in read_events(tmp_path / "metrics.jsonl")[0]
            if (e["name"], e["split"]) == (name, split)]  # fmt: skip


def test_training_stops_when_the_validation_loss_stops_improving(tmp_path):
    trainer = _trainer(tmp_path, epochs=10, patience=2)
    state = trainer.fit()
    trainer.events.close()
    assert (state.epoch, state.converged, state.since_best, state.stopped) == (3, True, 2, False)
    val = [e["value"] for e in _events(tmp_path, "loss", "val")]
    assert len(val) == 3 and val[0] == val[1] == val[2] == pytest.approx(state.best_loss)
    stops = _events(tmp_path, "early_stop", "train")
    assert [(e["epoch"], e["value"], e["step"]) for e in stops] == [(3, 3.0, 12)]
    progress = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["progress"]
    assert (progress["epoch"], progress["converged"], progress["since_best"]) == (3, True, 2)
    assert progress["best_loss"] == pytest.approx(val[0])


def test_without_patience_every_epoch_trains(tmp_path):
    trainer = _trainer(tmp_path, epochs=10, patience=0)
    state = trainer.fit()
    trainer.events.close()
    assert (state.epoch, state.converged) == (10, False)
    assert len(_events(tmp_path, "loss", "val")) == 10
    assert _events(tmp_path, "early_stop", "train") == []


def test_patience_running_out_on_the_last_epoch_is_not_an_early_stop(tmp_path):
    trainer = _trainer(tmp_path, epochs=3, patience=2)
    state = trainer.fit()
    trainer.events.close()
    assert (state.epoch, state.since_best, state.converged) == (3, 2, False)
    assert _events(tmp_path, "early_stop", "train") == []


def test_an_improvement_resets_the_count(tmp_path, monkeypatch):
    """Scripted validation losses: an improvement smaller than 1e-4 does not count."""
    trainer = _trainer(tmp_path, epochs=20, patience=2)
    losses = iter([1.0, 0.9, 0.95, 0.85, 0.84995, 0.9, 0.5])
    seen = []

    def evaluate(loader):
        loss = next(losses)
        seen.append(loss)
        return EvalResult(loss, 0.5, torch.zeros(0), torch.zeros(0))

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    state = trainer.fit()
    trainer.events.close()
    # best 1.0, 0.9 (0), 0.95 (1), 0.85 (0), 0.84995 (1: not by 1e-4), 0.9 (2): converged
    assert seen == [1.0, 0.9, 0.95, 0.85, 0.84995, 0.9]
    assert (state.epoch, state.converged, state.best_loss) == (6, True, 0.85)


def test_a_converged_run_resumed_trains_no_further_epoch(tmp_path):
    trainer = _trainer(tmp_path, epochs=10, patience=2)
    trainer.fit()
    trainer.events.close()
    last = tmp_path / "checkpoints" / "last.pt"
    saved, events = last.read_bytes(), (tmp_path / "metrics.jsonl").read_bytes()
    again = _trainer(tmp_path, epochs=10, patience=2)
    again.resume(last)
    assert (again.state.epoch, again.state.converged, again.state.since_best) == (3, True, 2)
    before = {k: v.clone() for k, v in again.model.state_dict().items()}
    state = again.fit()
    again.events.close()
    assert (state.epoch, state.global_step, state.converged) == (3, 12, True)
    assert last.read_bytes() == saved  # nothing trained, nothing saved
    assert (tmp_path / "metrics.jsonl").read_bytes() == events
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, before[k])


def test_a_checkpoint_from_before_early_stopping_resumes_without_it(tmp_path):
    trainer = _trainer(tmp_path / "a", epochs=4, patience=0)
    trainer.fit()
    trainer.events.close()
    state = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    state = {**state, "progress": {k: v for k, v in state["progress"].items()
                                   if k not in ("best_loss", "since_best", "converged")}}  # fmt: skip
    old = tmp_path / "old.pt"
    save_checkpoint(old, state)
    again = _trainer(tmp_path / "b", epochs=6, patience=2)
    again.resume(old)
    resumed = again.state
    assert (resumed.best_loss, resumed.since_best, resumed.converged) == (None, 0, False)
    assert (again.state.epoch, again.fit().epoch) == (4, 6)  # epoch 5 is the best, 6 one since


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("best_loss", "x", "progress best_loss is"),
        ("best_loss", float("nan"), "progress best_loss is"),
        ("best_loss", True, "progress best_loss is"),
        ("best_loss", 1e31, "progress best_loss is"),
        ("since_best", -1, "progress since_best is"),
        ("since_best", 1.5, "progress since_best is"),
        ("since_best", False, "progress since_best is"),
        ("converged", "yes", "progress converged is"),
        ("converged", 1, "progress converged is"),
    ],
)
def test_a_checkpoint_with_a_bad_early_stopping_state_is_refused(tmp_path, field, value, words):
    trainer = _trainer(tmp_path, epochs=2, patience=1)
    trainer.fit()
    trainer.events.close()
    last = tmp_path / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    check_training_checkpoint(state, last, 2)  # as saved: fine
    state["progress"][field] = value
    with pytest.raises(CheckpointError) as raised:
        check_training_checkpoint(state, last, 2)
    message = str(raised.value)
    assert str(last) in message and "cannot be resumed from" in message and words in message
    save_checkpoint(last, state)
    again = _trainer(tmp_path / "again", epochs=2, patience=1)
    with pytest.raises(CheckpointError, match=words):
        again.resume(last)
    assert again.state.epoch == 0  # refused before anything changed


# --- checkpoints of cheap epochs, and a validation loss that is not a number ----------------


def test_cheap_epochs_write_checkpoints_at_most_every_interval_and_always_at_the_end(tmp_path):
    seen = []

    def watch(trainer, epoch, val):  # runs before the epoch's checkpoints are written
        seen.append((tmp_path / "checkpoints" / "last.pt").exists())

    trainer = _trainer(tmp_path, epochs=4, patience=0, lr=0.1)
    trainer.checkpoint_seconds = 1e9  # never due: only the last epoch writes
    trainer.epoch_hooks.append(watch)
    trainer.fit()
    assert seen == [False, False, False, False]
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert last["progress"]["epoch"] == 4 and best["progress"]["epoch"] >= 1
    assert best["progress"]["best_score"] == last["progress"]["best_score"]
    # The control: every epoch writes when no interval is set.
    control, seen[:] = _trainer(tmp_path / "c", epochs=4, patience=0, lr=0.1), []
    control.checkpoint_dir = tmp_path / "checkpoints"
    (tmp_path / "checkpoints" / "last.pt").unlink()
    control.epoch_hooks.append(watch)
    control.fit()
    assert seen == [False, True, True, True]


def test_a_validation_loss_that_is_not_a_number_is_never_the_best_and_the_run_resumes(tmp_path):
    trainer = _trainer(tmp_path, epochs=3, patience=2)
    trainer.eval_loss_fn = lambda logits, y: torch.tensor(float("inf"))
    state = trainer.fit()
    assert state.best_loss is None and state.since_best >= 2
    again = _trainer(tmp_path, epochs=3, patience=2)
    again.resume(tmp_path / "checkpoints" / "last.pt")  # its progress passes the checks
    assert again.state.epoch == state.epoch
