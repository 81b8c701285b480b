"""Several processes (DistributedDataParallel under torchrun): every process takes its share of
the same batches, they agree on the loss, the sums and when to stop, rank 0 alone writes the
run folder, and a checkpoint resumes with any number of processes.

Run as `torchrun ... -m tests.integration.test_distributed OUT` it is the processes' own script
(`_rank_main`), started by `test_two_processes_take_the_steps_of_one`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.cli.launch import torchrun_command
from engine.cli.main import main
from engine.config import ConfigError
from engine.data import BatchLoader, ImageSet
from engine.data.loader import _generator, random_crop_flip
from engine.execution import launcher
from engine.experiments import classify
from engine.experiments.kinds import check_processes
from engine.models import build_model
from engine.store import runs
from engine.store.layout import RunLayout
from engine.train import Trainer, load_checkpoint, read_events
from engine.train.distributed import check_batch_size

REPO = Path(__file__).resolve().parents[2]
MEAN, STD = [0.5] * 3, [0.25] * 3


def _data(n: int, seed: int = 1) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 4, 4), generator=g, dtype=torch.uint8)
    return ImageSet(images, torch.randint(0, 3, (n,), generator=g), torch.arange(n))


def _loader(n: int, batch_size: int, rank: int = 0, world: int = 1, augment=False) -> BatchLoader:
    loader = BatchLoader(_data(n), batch_size, MEAN, STD, shuffle=True, augment=augment, seed=5)
    return loader.shard(rank, world)


# --- the shares of an epoch --------------------------------------------------------------
@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize(
    "n, batch_size", [(8, 8), (45, 8), (64, 8), (65, 8), (67, 8), (71, 8), (100, 16), (1259, 64)]
)
def test_the_shares_of_an_epoch_cover_every_position_once(n, batch_size, world):
    ranks = [_loader(n, batch_size, r, world) for r in range(world)]
    steps = len(ranks[0])
    assert all(len(r) == steps for r in ranks)  # every process takes the same number of steps
    for epoch in (1, 4):
        order = ranks[0].order(epoch)
        shares = [[idx for _, _, idx in r.batches(epoch)] for r in ranks]
        for b in range(steps):
            parts = [s[b] for s in shares]
            batch = ranks[0].batch_slice(order, b)
            # Together the shares are batch b of the 1-process order, each image once...
            assert sorted(torch.cat(parts).tolist()) == sorted(batch.tolist())
            assert sum(map(len, parts)) == ranks[0].batch_length(b) == len(batch)
            # ...split evenly (the last batch too), never leaving a process one image.
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
            assert min(map(len, parts)) >= 2 or (world == 1 and n < 2)
        everything = torch.cat([torch.cat(s) for s in shares])
        assert sorted(everything.tolist()) == list(range(n))
        # The same global order as one process: batch after batch, the order's positions.
        joined = torch.cat([ranks[0].batch_slice(order, b) for b in range(steps)])
        assert torch.equal(joined, order)


def test_one_process_takes_the_batches_it_always_took():
    """Sharding over one process changes nothing: the same positions, the same augmentation
    draws (keyed by seed, epoch and batch), the same last-batch rule (9 = 4 + 5)."""
    plain = BatchLoader(_data(9), 4, MEAN, STD, shuffle=True, augment=True, seed=5)
    sharded = _loader(9, 4, 0, 1, augment=True)
    assert len(plain) == len(sharded) == 2
    for (x, y, idx), (xs, ys, idxs) in zip(plain.batches(3), sharded.batches(3), strict=True):
        assert torch.equal(idx, idxs) and torch.equal(x, xs) and torch.equal(y, ys)
    order = plain.order(3)
    x, _, idx = next(plain.batches(3))
    expected = random_crop_flip(plain.normalise(plain.images[order[:4]]), _generator(5, 3, 0, 1))
    assert torch.equal(idx, order[:4]) and torch.equal(x, expected)


@pytest.mark.parametrize("world", [2, 3])
def test_a_mid_epoch_resume_takes_the_rest_of_the_same_shares(world):
    for rank in range(world):
        loader = _loader(67, 8, rank, world, augment=True)
        full = list(loader.batches(epoch=2))
        tail = list(loader.batches(epoch=2, start=3))
        assert len(tail) == len(full) - 3
        for a, b in zip(full[3:], tail, strict=True):
            assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_a_resume_with_another_number_of_processes_continues_the_same_order():
    """Stopped at step 3 by one process, resumed by two: the rest of the epoch is the same
    images, batch by batch, as the one process would have taken."""
    one = _loader(69, 8)  # 69 = 8 x 8 + 5: the same last batch for one and two processes
    two = [_loader(69, 8, r, 2) for r in range(2)]
    assert len(one) == len(two[0])
    rest_one = [idx for _, _, idx in one.batches(epoch=2, start=3)]
    rest_two = zip(*[[idx for _, _, idx in t.batches(epoch=2, start=3)] for t in two], strict=True)
    for single, parts in zip(rest_one, rest_two, strict=True):
        assert sorted(single.tolist()) == sorted(torch.cat(parts).tolist())


def test_a_last_batch_too_small_to_split_joins_the_batch_before_it():
    # 66 = 8 x 8 + 2: one process keeps a last batch of 2; two would get one image each.
    assert [len(y) for _, y, _ in _loader(66, 8).batches()][-1] == 2
    assert [len(y) for _, y, _ in _loader(66, 8, 0, 2).batches()][-1] == 5  # of 10


def test_what_cannot_be_split_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="too few for 4 processes"):
        _loader(7, 8, 0, 4)
    with pytest.raises(ConfigError, match="batch_size 6 is too small for 4 processes"):
        check_batch_size(6, 4)
    check_batch_size(6, 1)
    with pytest.raises(ConfigError, match="fewshot runs train in one process"):
        check_processes("fewshot", 2)
    check_processes("transfer", 2)
    check_processes("segment", 1)


# --- the command line --------------------------------------------------------------------
def test_the_torchrun_command_runs_the_engine_on_the_run_folder(tmp_path):
    cmd = torchrun_command("train", tmp_path, 4)
    assert "--standalone" in cmd and cmd[cmd.index("--nproc_per_node") + 1] == "4"
    assert cmd[-4:] == ["engine", "train", "--run-dir", str(tmp_path)]
    assert "torchrun" in cmd[0] or cmd[1:3] == ["-m", "torch.distributed.run"]
    node = torchrun_command("resume", tmp_path, 8, 2, 1, "10.0.0.1:29500", ["--from", "best"])
    assert "--standalone" not in node
    for flag, value in (("--nnodes", "2"), ("--node_rank", "1"),
                        ("--rdzv_endpoint", "10.0.0.1:29500")):  # fmt: skip
        assert node[node.index(flag) + 1] == value
    assert node[-6:] == ["engine", "resume", "--run-dir", str(tmp_path), "--from", "best"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--nproc", "2", "--background"], "leave out --background"),
        (["--nproc", "2", "--nnodes", "2"], "--rdzv-endpoint"),
        (["--nproc", "0"], "must be >= 1"),
        (["--nproc", "2", "--kind", "fewshot"], "fewshot runs train in one process"),
        (["--nproc", "2", "--batch-size", "3"], "batch_size 3 is too small"),
    ],
)
def test_train_refuses_what_several_processes_cannot_do_before_making_a_run(
    runs_dir, capsys, flags, message
):
    assert main(["train", "--dataset", "digits", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_a_train_without_a_run_folder_is_refused_under_torchrun(runs_dir, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # as torchrun sets them: every process would make a run
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--dataset", "digits"]) == 2
    assert "--run-dir RUN" in capsys.readouterr().err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


# --- two processes, in the Trainer -------------------------------------------------------
def _linear_trainer(checkpoint_dir=None, should_stop=lambda: False, epochs=2) -> Trainer:
    """No BatchNorm and no augmentation: two processes must take exactly one's steps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    data = _data(45)  # 45 = 5 x 8 + 5: a last batch of 5, split 3 + 2
    return Trainer(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.5),
        train_loader=BatchLoader(data, 8, MEAN, STD, shuffle=True, seed=5),
        val_loader=BatchLoader(data, 16, MEAN, STD),
        epochs=epochs,
        checkpoint_dir=checkpoint_dir,
        should_stop=should_stop,
        log_every=5,
    )


def _rank_main(out: Path) -> None:
    """One torchrun process: a whole run, then a run that rank 0 alone is asked to stop."""
    from engine.train import distributed

    with distributed.process_group(torch.device("cpu")):
        rank, world = distributed.rank(), distributed.world_size()
        trainer = _linear_trainer(out / f"full{rank}")
        trainer.train_loader.shard(rank, world)
        state = trainer.fit()
        torch.save(
            {"model": trainer.model.state_dict(), "state": vars(state)}, out / f"full{rank}.pt"
        )
        stopping = _linear_trainer(
            out / f"stop{rank}", should_stop=lambda: rank == 0 and stopping.state.global_step >= 2
        )
        stopping.train_loader.shard(rank, world)
        state = stopping.fit()
        torch.save({"state": vars(state)}, out / f"stop{rank}.pt")


@pytest.mark.slow  # launches torchrun (2 processes, ~11 s)
def test_two_processes_take_the_steps_of_one(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "tests.integration.test_distributed", str(tmp_path)]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]

    single = _linear_trainer(tmp_path / "single")
    single.fit()
    full = [torch.load(tmp_path / f"full{r}.pt") for r in range(2)]
    for f in full:  # the same weights as one process, in both processes
        for name, value in single.model.state_dict().items():
            torch.testing.assert_close(f["model"][name], value, rtol=1e-5, atol=1e-6)
    # The same progress and sums everywhere; best_score is rank 0's (it alone validates).
    assert {**full[0]["state"], "best_score": None} == {**full[1]["state"], "best_score": None}
    assert full[0]["state"]["global_step"] == 12
    # Rank 0 alone writes checkpoints, and they are a 1-process run's.
    assert not (tmp_path / "full1").exists()
    last = load_checkpoint(tmp_path / "full0" / "last.pt")
    assert last["model"].keys() == single.model.state_dict().keys()  # no "module." prefix

    # Rank 0 was asked to stop after step 2: both stopped together, at the next agreement
    # (the logged step 5), and the sums in last.pt are both processes' (5 batches of 8).
    stopped = [
        {**torch.load(tmp_path / f"stop{r}.pt")["state"], "best_score": None} for r in range(2)
    ]
    assert stopped[0] == stopped[1]
    assert stopped[0]["stopped"] and stopped[0]["global_step"] == 5
    assert not (tmp_path / "stop1").exists()
    progress = load_checkpoint(tmp_path / "stop0" / "last.pt")["progress"]
    assert progress["step_in_epoch"] == 5 and progress["seen"] == 40
    # One process resumes it and ends where the uninterrupted run ended.
    resumed = _linear_trainer(tmp_path / "resumed")
    resumed.resume(tmp_path / "stop0" / "last.pt")
    resumed.fit()
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=1e-5, atol=1e-6)


# --- two processes through the command line (slow) ---------------------------------------
def _cli(*args, runs_dir, timeout=300) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(runs_dir), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "engine", *map(str, args)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return result, time.perf_counter() - started


def _run_folder(result: subprocess.CompletedProcess) -> Path:
    match = re.search(r"^run folder: (.+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout + result.stderr
    return Path(match.group(1))


def _assert_one_well_formed_run(run_dir: Path, epochs: int) -> dict:
    status = runs.read_status(run_dir)
    assert status["state"] == "finished", status
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")) == [
        "artifacts", "checkpoints", "config.json", "metrics.jsonl", "status.json",
    ]  # fmt: skip
    events = read_events(RunLayout(run_dir).metrics)[0]
    keys = Counter((e["name"], e["split"], e["epoch"], e["step"]) for e in events)
    assert set(keys.values()) == {1}, keys  # no event written twice (by two processes)
    val = [e["epoch"] for e in events if (e["name"], e["split"]) == ("acc", "val")]
    assert val == list(range(1, epochs + 1))
    assert [e["split"] for e in events if e["name"] == "acc"].count("test") == 1
    layout = RunLayout(run_dir)
    assert layout.embedding_epochs() == list(range(1, epochs + 1))
    for path in (layout.last_checkpoint, layout.best_checkpoint):
        ckpt = load_checkpoint(path)
        assert ckpt["progress"]["epoch"] <= epochs
        build_model("small_cnn", 10).load_state_dict(ckpt["model"])  # strict: a bare module
    assert load_checkpoint(layout.last_checkpoint)["progress"]["epoch"] == epochs
    return status["summary"]


@pytest.mark.slow
def test_two_processes_train_one_run_as_well_as_one_process(runs_dir, tmp_path, tiny_config):
    epochs = 4
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config(epochs=epochs).to_dict()))
    two, two_seconds = _cli("train", "--config", config, "--nproc", 2, runs_dir=runs_dir)
    assert two.returncode == 0, two.stdout + two.stderr
    assert re.search(r"^torchrun: .*--nproc_per_node 2 -m engine train --run-dir ", two.stdout,
                     re.MULTILINE)  # fmt: skip
    assert len(list(runs_dir.iterdir())) == 1  # one run folder, made once
    two_summary = _assert_one_well_formed_run(_run_folder(two), epochs)

    one, one_seconds = _cli("train", "--config", config, runs_dir=runs_dir)
    assert one.returncode == 0, one.stdout + one.stderr
    one_summary = _assert_one_well_formed_run(_run_folder(one), epochs)
    print(
        f"\ntest accuracy: 2 processes {two_summary['test_acc']:.4f} in {two_seconds:.1f} s, "
        f"1 process {one_summary['test_acc']:.4f} in {one_seconds:.1f} s"
    )
    assert abs(two_summary["test_acc"] - one_summary["test_acc"]) <= 0.04
    assert f"test acc {two_summary['test_acc']:.4f}" in two.stdout  # rank 0's summary, once
    assert two.stdout.count("test acc") == 1


@pytest.mark.slow
def test_a_stopped_two_process_run_resumes_in_one_and_back_in_two(runs_dir, tiny_config):
    """Stop (SIGTERM to rank 0) ends both processes at one step with last.pt saved; one
    process resumes it, is stopped again, and two processes finish it."""
    cfg = tiny_config(epochs=8, image_size=8)
    run_dir = runs.create_run(cfg, runs_dir)
    env = {**os.environ, "WORKBENCH_RUNS_DIR": str(runs_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "resume", run_dir, "--nproc", "2"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not any(e["step"] >= 10 for e in read_events(RunLayout(run_dir).metrics)[0]):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.05)
        assert launcher.stop(run_dir)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert runs.read_status(run_dir)["state"] == "stopped", output
    progress = load_checkpoint(RunLayout(run_dir).last_checkpoint)["progress"]
    assert progress["epoch"] < cfg.epochs and progress["global_step"] >= 10

    stop_at = progress["global_step"] + 7  # mid-epoch, in one process this time
    seen = {}
    summary = classify.run(
        cfg, run_dir, resume=True, on_step=lambda s: seen.update(step=s.global_step),
        should_stop=lambda: seen["step"] >= stop_at,
    )  # fmt: skip
    assert "test_acc" not in summary
    assert load_checkpoint(RunLayout(run_dir).last_checkpoint)["progress"]["global_step"] == stop_at

    result, _ = _cli("resume", run_dir, "--nproc", 2, runs_dir=runs_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    _assert_one_well_formed_run(run_dir, cfg.epochs)


if __name__ == "__main__":  # one of the processes of test_two_processes_take_the_steps_of_one
    _rank_main(Path(sys.argv[1]))
