"""Experiment kinds: config -> run, each built from the common parts (data, models, Trainer).
The table of kinds is engine.experiments.kinds.KINDS."""

from engine.experiments.kinds import KINDS, Kind, get_experiment, get_kind

__all__ = ["KINDS", "Kind", "get_experiment", "get_kind"]
