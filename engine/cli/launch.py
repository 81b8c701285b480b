"""The CLI's side of several training processes: `--nproc N` (and several machines) checks
the run, prints the torchrun command and runs it; under torchrun, the other ranks follow
rank 0, which keeps the run folder's books."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from engine.config import ConfigError, RunConfig


def add_launch_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train with N processes on this machine, one per GPU (gloo on the "
                   "CPU), under torchrun: prints the torchrun command and runs it")  # fmt: skip
    p.add_argument("--nnodes", type=int, default=1, metavar="M",
                   help="with --nproc: M machines (this one is node 0) meeting at "
                   "--rdzv-endpoint; prints the command for each of the others")  # fmt: skip
    p.add_argument("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                   help="with --nnodes: this machine's address and a free port")  # fmt: skip


def torchrun_rank() -> int | None:
    """This process's rank when torchrun started it as one of several, else None. Read from
    the environment (as engine.train.distributed.World does) without importing torch, which
    a queued run's waiting process does without."""
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        return int(os.environ.get("RANK", 0))
    return None


def wants_torchrun(a: argparse.Namespace) -> bool:
    """True when the flags ask for several processes; refuses flags that cannot go together."""
    if a.nproc < 1 or a.nnodes < 1:
        raise ConfigError(f"--nproc and --nnodes must be >= 1, got {a.nproc} and {a.nnodes}")
    wanted = a.nproc * a.nnodes > 1
    if wanted and torchrun_rank() is not None:
        raise ConfigError("--nproc and --nnodes start torchrun: under torchrun, leave them out")
    if (a.nnodes > 1) != bool(a.rdzv_endpoint):
        raise ConfigError("--nnodes M (M > 1) and --rdzv-endpoint HOST:PORT go together")
    if wanted and a.background:
        raise ConfigError(
            "--nproc runs torchrun in the foreground: leave out --background (or run the "
            "command under nohup or a job scheduler)"
        )
    return wanted


def check_launch(cfg: RunConfig, a: argparse.Namespace) -> None:
    """What would make the processes fail once started, said before anything starts."""
    from engine.experiments.kinds import check_processes
    from engine.train import distributed, resolve_device

    check_processes(cfg.kind, a.nproc * a.nnodes)
    distributed.check_batch_size(cfg.batch_size, a.nproc * a.nnodes)
    if getattr(cfg, "loss", "cross_entropy") == "weighted_cross_entropy":
        # Its mean divides by the batch's summed class weights, not its image count: the
        # processes' shares would not add up to the whole batch's gradient.
        raise ConfigError("loss weighted_cross_entropy does not train under several "
                          "processes yet; use balanced_softmax or cross_entropy, or --nproc 1")  # fmt: skip
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        import torch

        if a.nproc > torch.cuda.device_count():
            raise ConfigError(
                f"--nproc {a.nproc}, but this machine has {torch.cuda.device_count()} GPUs: "
                "one process per GPU"
            )
    elif device.type != "cpu":
        raise ConfigError(f"several processes need CUDA GPUs or the CPU, not {device.type}")


def torchrun_command(
    command: str, run_dir: Path, nproc: int, nnodes: int = 1, node_rank: int = 0,
    endpoint: str | None = None, extra: list[str] | tuple[str, ...] = (),
) -> list[str]:  # fmt: skip
    """`torchrun ... -m engine train|resume --run-dir RUN`: what machine `node_rank` runs."""
    torchrun = Path(sys.executable).with_name("torchrun")  # this environment's, not PATH's
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]  # fmt: skip
    if nnodes == 1:
        where = ["--standalone"]  # a free port on this machine
    else:  # static rendezvous: node 0 holds the meeting point, and its process 0 is rank 0
        where = ["--nnodes", str(nnodes), "--node_rank", str(node_rank),
                 "--rdzv_endpoint", str(endpoint)]  # fmt: skip
    return [*launcher, *where, "--nproc_per_node", str(nproc),
            "-m", "engine", command, "--run-dir", str(run_dir), *extra]  # fmt: skip


def run_torchrun(
    command: str, run_dir: Path, a: argparse.Namespace, extra: list[str] | tuple[str, ...] = ()
) -> int:
    """Run this machine's processes of `run_dir` under torchrun and wait for them. Rank 0
    is the run's own process (status.json, events, checkpoints), as a 1-process run is."""
    import subprocess

    from engine.execution.worker import child_env
    from engine.store import runs

    run_dir = run_dir.resolve()
    if runs.is_active(run_dir):
        raise runs.RunError(f"{run_dir.name} is already running; stop it first")
    runs.write_status(run_dir, after=[], stop_requested=False)  # started here and now
    cmd = torchrun_command(command, run_dir, a.nproc, a.nnodes, 0, a.rdzv_endpoint, extra)
    for node in range(1, a.nnodes):
        other = torchrun_command(command, run_dir, a.nproc, a.nnodes, node, a.rdzv_endpoint, extra)
        print(f"on node {node}, in the repository root: {shlex.join(other)}")
    print(f"torchrun: {shlex.join(cmd)}", flush=True)
    with subprocess.Popen(cmd, env=child_env()) as proc:
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # torchrun got the Ctrl-C too: let it end its processes
            proc.wait()
            raise
    status = runs.read_status(run_dir)
    if code != 0 and status.get("state") == "queued" and not status.get("pid"):
        runs.write_status(
            run_dir, state="failed", ended=time.time(),
            error=f"torchrun ended (exit code {code}) before training started; its output says why",
        )  # fmt: skip
    return code


def follow(run_dir: Path, resume: bool, resume_from: str) -> None:
    """A torchrun process other than rank 0: it trains its share of every batch and writes
    nothing; rank 0 keeps status.json and the run folder, and says what there is to say
    (errors still reach stderr)."""
    import signal
    import threading
    from contextlib import redirect_stdout

    from engine.experiments import get_experiment
    from engine.store.runs import load_config

    cfg = load_config(run_dir)
    stop = threading.Event()
    # torchrun passes a SIGTERM on to every process; all stop at the step rank 0 stops at.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(os.devnull, "w") as quiet, redirect_stdout(quiet):
        get_experiment(cfg.kind)(
            cfg, run_dir, resume=resume, should_stop=stop.is_set, resume_from=resume_from
        )
