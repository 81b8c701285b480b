"""The export tests' finished run (module-scoped) and each test's own copy of it."""

from tests.support.export import finished, run_dir  # noqa: F401
