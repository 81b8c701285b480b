"""Data shared by the experiment-kind tests (tests/support/experiments.py): the SSL tests'
striped four-class `folder` and the segmentation tests' `deepglobe` folder."""

from tests.support.experiments import deepglobe, folder  # noqa: F401
