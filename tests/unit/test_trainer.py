import math

import pytest
import torch
import torch.nn.functional as F

from engine.config import OptimConfig
from engine.data import BatchLoader, ImageSet
from engine.models import build_model
from engine.train import (
    EventLog,
    NonFiniteLoss,
    Trainer,
    build_optimizer,
    load_checkpoint,
    read_events,
)

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def _brightness_set(n: int, seed: int) -> ImageSet:
    """Two classes told apart by mean brightness (dark ~80, bright ~170), with pixel noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    base = torch.where(labels == 1, 170, 80)[:, None, None, None]
    noise = torch.randint(-60, 61, (n, 3, 16, 16), generator=g)
    images = (base + noise).clamp(0, 255).to(torch.uint8)
    return ImageSet(images, labels, torch.arange(n))


def _trainer(
    tmp_path,
    epochs=3,
    optim=None,
    augment=True,
    log_every=1,
    loss_fn=F.cross_entropy,
    checkpoints=True,
) -> Trainer:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=2)
    optim = optim or OptimConfig(name="adam", lr=3e-3, schedule="cosine")
    optimizer, scheduler = build_optimizer(model, optim, epochs)
    train = BatchLoader(
        _brightness_set(64, 0), 16, MEAN, STD, shuffle=True, augment=augment, seed=1
    )
    val = BatchLoader(_brightness_set(32, 1), 16, MEAN, STD)
    return Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        train_loader=train,
        val_loader=val,
        epochs=epochs,
        loss_fn=loss_fn,
        events=EventLog(tmp_path / "metrics.jsonl"),
        checkpoint_dir=tmp_path / "checkpoints" if checkpoints else None,
        log_every=log_every,
    )


def _epoch_events(path) -> list[tuple]:
    """Every per-epoch event except wall-clock ones, in the order written."""
    return [
        (e["name"], e["split"], e["epoch"], e["step"], e["value"])
        for e in read_events(path)[0]
        if e["name"] != "epoch_seconds"
    ]


def _by(events, name, split):
    return [value for n, s, _, _, value in events if (n, s) == (name, split)]


def test_learns_a_separable_task_and_writes_checkpoints(tmp_path):
    trainer = _trainer(tmp_path, epochs=3, augment=False)
    before = trainer.evaluate(trainer.val_loader)
    state = trainer.fit()
    trainer.events.close()
    assert state.epoch == 3 and not state.stopped and state.global_step == 12

    events = _epoch_events(tmp_path / "metrics.jsonl")
    train_loss = _by(events, "loss", "train_epoch")
    val_loss, val_acc = _by(events, "loss", "val"), _by(events, "acc", "val")
    assert len(train_loss) == len(val_acc) == 3
    assert train_loss[-1] < train_loss[0]
    assert val_loss[-1] < before.loss
    assert val_acc[-1] >= 0.9 and val_acc[-1] > before.acc
    assert state.best_score == max(val_acc)
    step_losses = [e for e in events if e[1] == "train"]
    assert len([e for e in step_losses if e[0] == "loss"]) == 12  # log_every=1

    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert last["progress"]["epoch"] == 3 and last["progress"]["step_in_epoch"] == 0
    assert best["progress"]["best_score"] == max(val_acc)
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(last["model"][name], tensor)


def test_epoch_hooks_run_once_per_epoch_with_the_val_result(tmp_path):
    trainer = _trainer(tmp_path, epochs=2, checkpoints=False)
    calls = []
    trainer.epoch_hooks.append(
        lambda t, epoch, val: calls.append((epoch, val.acc, len(val.labels)))
    )
    trainer.fit()
    trainer.events.close()
    val_acc = _by(_epoch_events(tmp_path / "metrics.jsonl"), "acc", "val")
    assert calls == [(1, val_acc[0], 32), (2, val_acc[1], 32)]


@pytest.mark.parametrize(
    "stop_at_step",
    [6, 4],  # mid-epoch 2; after the last batch of epoch 1, before its evaluation
)
def test_stop_and_resume_is_exact(tmp_path, stop_at_step):
    straight = _trainer(tmp_path / "straight")
    straight.fit()
    straight.events.close()

    interrupted = _trainer(tmp_path / "resumed")
    interrupted.should_stop = lambda: interrupted.state.global_step == stop_at_step
    state = interrupted.fit()
    interrupted.events.close()
    assert state.stopped and state.global_step == stop_at_step
    last = tmp_path / "resumed" / "checkpoints" / "last.pt"
    saved = load_checkpoint(last)["progress"]
    assert saved["global_step"] == stop_at_step
    assert saved["epoch"] * 4 + saved["step_in_epoch"] == stop_at_step

    fresh = _trainer(tmp_path / "resumed")  # a new process would build everything again
    torch.manual_seed(12345)  # whatever the global RNG holds, resume restores it
    fresh.resume(last)
    assert torch.equal(torch.get_rng_state(), load_checkpoint(last)["rng"]["torch"])
    final = fresh.fit()
    fresh.events.close()
    assert final.epoch == 3 and not final.stopped

    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(fresh.model.state_dict()[name], tensor), name
    # The optimiser and schedule continued, not restarted.
    assert fresh.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]
    expected = _epoch_events(tmp_path / "straight" / "metrics.jsonl")
    got = _epoch_events(tmp_path / "resumed" / "metrics.jsonl")
    assert _by(got, "acc", "val") == _by(expected, "acc", "val")
    assert _by(got, "loss", "val") == _by(expected, "loss", "val")
    assert got == expected  # step losses, train loss / accuracy and lr too, value for value


def test_resume_of_a_finished_run_trains_no_further(tmp_path):
    trainer = _trainer(tmp_path, epochs=1)
    trainer.fit()
    again = _trainer(tmp_path, epochs=1)
    again.resume(tmp_path / "checkpoints" / "last.pt")
    assert again.fit().global_step == trainer.state.global_step
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], tensor)


def test_huge_learning_rate_raises_nonfinite_loss(tmp_path):
    trainer = _trainer(tmp_path, optim=OptimConfig(name="sgd", lr=1e10, schedule="none"))
    with pytest.raises(NonFiniteLoss, match="lower learning rate"):
        trainer.fit()


def test_nan_loss_raises_nonfinite_loss(tmp_path):
    def nan_loss(logits, y):
        return F.cross_entropy(logits, y) * float("nan")

    trainer = _trainer(tmp_path, loss_fn=nan_loss)
    with pytest.raises(NonFiniteLoss, match="loss became nan at epoch 1, step 1"):
        trainer.fit()
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


def test_nan_between_logged_steps_is_caught_before_last_pt_is_overwritten(tmp_path):
    calls = [0]

    def nan_on_the_last_batch_of_epoch_2(logits, y):
        loss = F.cross_entropy(logits, y)
        if torch.is_grad_enabled():  # training steps only, not evaluation
            calls[0] += 1
            if calls[0] == 8:
                return loss * float("nan")
        return loss

    # log_every larger than the whole run: the per-step check never looks.
    trainer = _trainer(tmp_path, log_every=1000, loss_fn=nan_on_the_last_batch_of_epoch_2)
    with pytest.raises(NonFiniteLoss, match="epoch 2"):
        trainer.fit()
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["progress"]["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert math.isfinite(last["progress"]["loss_sum"])


def test_the_step_schedule_multiplies_the_rate_every_step_size_epochs():
    from engine.config import OptimConfig
    from engine.train.trainer import build_optimizer

    model = torch.nn.Linear(2, 2)
    cfg = OptimConfig(name="sgd", lr=1.0, schedule="step", step_size=40, gamma=0.9)
    cfg.validate()
    opt, sched = build_optimizer(model, cfg, epochs=200)
    rates = []
    for _ in range(121):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[0] == rates[39] == 1.0
    assert rates[40] == pytest.approx(0.9) and rates[79] == pytest.approx(0.9)
    assert rates[80] == pytest.approx(0.81) and rates[120] == pytest.approx(0.729)
