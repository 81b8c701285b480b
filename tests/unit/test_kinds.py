"""KINDS, the one table of experiment kinds: it covers every config kind and every preset,
each kind's module has what its row promises, and what a page offers it can load."""

from __future__ import annotations

import pytest

from engine.config import CONFIG_KINDS, ConfigError
from engine.experiments.kinds import KINDS, check_processes, get_experiment, get_kind, preset_kind
from engine.experiments.presets import PRESET_KINDS, PRESETS
from engine.inspect.loading import load_run_model
from engine.store import runs
from engine.train import CheckpointError


def test_the_table_covers_every_config_kind_and_every_preset():
    assert set(KINDS) == set(CONFIG_KINDS)
    assert set(PRESET_KINDS) == set(PRESETS)
    assert all(preset_kind(p) == PRESET_KINDS[p] for p in PRESETS)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_kind("no-such-preset")


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind_s_module_has_what_its_row_promises(name):
    kind = get_kind(name)
    module = kind.experiment()
    assert get_experiment(name) is module.run
    assert kind.config is CONFIG_KINDS[name]
    assert hasattr(module, "inspection_model") == kind.inspectable
    assert not kind.classifies_images or kind.inspectable  # a page that offers it can load it


def test_an_unknown_kind_names_the_choices():
    with pytest.raises(ConfigError, match="unknown experiment kind 'nope'; choose one of classify"):
        get_kind("nope")


@pytest.mark.parametrize("name", [k for k in KINDS if not KINDS[k].inspectable])
def test_a_kind_whose_model_is_not_rebuilt_says_so_before_reading_a_checkpoint(
    name, runs_dir, tmp_path
):
    run_dir = runs.create_run(CONFIG_KINDS[name](), runs_dir)  # no checkpoint at all
    with pytest.raises(CheckpointError, match=f"{run_dir.name} is a .* run: its model is not"):
        load_run_model(run_dir)


@pytest.mark.parametrize("name", list(KINDS))
def test_only_ddp_kinds_take_several_processes(name):
    check_processes(name, 1)
    if KINDS[name].distributed:
        check_processes(name, 4)
    else:
        with pytest.raises(ConfigError, match="train in one process"):
            check_processes(name, 2)
