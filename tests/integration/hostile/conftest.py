"""The hostile-runs kit (tests/support/hostile_runs.py): a finished template run, a fresh
folder per example, and the recorder of the signals `stop` would send."""

from tests.support.hostile_runs import folder, signals, template  # noqa: F401
