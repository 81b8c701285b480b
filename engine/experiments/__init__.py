"""Experiment kinds: config -> run, each built from the common parts (data, models, Trainer)."""

from __future__ import annotations

from collections.abc import Callable


def get_experiment(kind: str) -> Callable[..., dict]:
    if kind == "classify":
        from engine.experiments.classify import run

        return run
    if kind == "transfer":
        from engine.experiments.transfer import run

        return run
    if kind == "dynamic_filter":
        from engine.experiments.dynamic_filter import run

        return run
    if kind == "segment":
        from engine.experiments.segment import run

        return run
    if kind == "fewshot":
        from engine.experiments.fewshot import run

        return run
    if kind == "ssl":
        from engine.experiments.ssl import run

        return run
    raise ValueError(f"unknown experiment kind {kind!r}")
