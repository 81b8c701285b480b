"""The unit tier: fast tests in this process (no subprocess, no launched run, no browser).
`pytest tests/unit` runs in under a minute."""

from tests.support.fixtures import base, cache, pets, resnet18_cached  # noqa: F401
