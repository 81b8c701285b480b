"""The integration tier: tests that spawn processes (`python -m engine`, launched runs, workers,
torchrun) or train for more than a few seconds."""

from tests.support.fixtures import base, cache, pets, resnet18_cached  # noqa: F401
