"""Fixtures of the hostile-input tests: a run already in the runs folder (hostile archives),
and a finished template run with a fresh folder per example (hostile runs)."""

from tests.support.archives import present  # noqa: F401
from tests.support.hostile_runs import folder, template  # noqa: F401
