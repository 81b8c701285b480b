import json

import pytest

from engine.config import ConfigError, DataConfig, ModelConfig, OptimConfig, RunConfig


def test_defaults_validate():
    cfg = RunConfig()
    assert cfg.validate() is cfg
    for part in (DataConfig(), ModelConfig(), OptimConfig()):
        part.validate()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: OptimConfig(lr=-1), "lr must be > 0, got -1"),
        (lambda: OptimConfig(lr=0), "lr must be > 0, got 0"),
        (lambda: OptimConfig(momentum=1.0), "momentum must be in [0, 1), got 1"),
        (lambda: OptimConfig(weight_decay=-0.1), "weight_decay must be in [0, 1], got -0.1"),
        (lambda: OptimConfig(gamma=0), "gamma must be in (0, 1], got 0"),
        (
            lambda: OptimConfig(milestones=[5, 3]),
            "milestones must be positive and increasing, got [5, 3]",
        ),
        (
            lambda: OptimConfig(name="rmsprop"),
            "optim.name must be one of sgd, adam, got 'rmsprop'",
        ),
        (
            lambda: OptimConfig(schedule="exponential"),
            "optim.schedule must be one of none, multistep, step, cosine, got 'exponential'",
        ),
        (
            lambda: DataConfig(name="svhn"),
            "data.name must be one of digits, folder, prefixed, csv, cifar10, fashion_mnist, mnist, kmnist, unlabelled, landcover, deepglobe, got 'svhn'",
        ),
        (lambda: DataConfig(name="folder"), "data.path is required for the 'folder' dataset"),
        (lambda: DataConfig(image_size=4), "data.image_size must be in [8, 512], got 4"),
        (lambda: DataConfig(val_fraction=0.5), "data.val_fraction must be in (0, 0.5), got 0.5"),
        (lambda: DataConfig(test_fraction=0), "data.test_fraction must be in (0, 0.5), got 0"),
        (lambda: RunConfig(kind="segment"), "kind must be 'classify', got 'segment'"),
        (lambda: RunConfig(epochs=0), "epochs must be in [1, 100000], got 0"),
        (lambda: RunConfig(batch_size=0), "batch_size must be in [1, 65536], got 0"),
        (lambda: RunConfig(device="tpu"), "device must be one of auto, cpu, cuda, mps, got 'tpu'"),
        (lambda: RunConfig(snapshot_every=0), "snapshot_every must be in [1, 100000], got 0"),
        (lambda: RunConfig(snapshot_size=5), "snapshot_size must be in [10, 1e+06], got 5"),
        (lambda: RunConfig(log_every=0), "log_every must be in [1, 1e+09], got 0"),
        (
            lambda: RunConfig(epochs=4, snapshot_epochs=[0, 2, 5]),
            "snapshot_epochs must lie in [1, 4], got [0, 5]",
        ),
    ],
)
def test_each_invalid_field_has_one_clear_message(make, message):
    with pytest.raises(ConfigError) as e:
        make().validate()
    assert str(e.value) == message


def test_invalid_nested_field_is_reported_by_the_run_config():
    with pytest.raises(ConfigError, match=r"^lr must be > 0, got -1$"):
        RunConfig(optim=OptimConfig(lr=-1)).validate()


def test_unknown_model_lists_the_registry():
    with pytest.raises(ConfigError) as e:
        ModelConfig(name="vgg11").validate()
    assert "'vgg11'" in str(e.value)
    for name in ("small_cnn", "resnet18", "resnet34", "resnet50"):
        assert name in str(e.value)


def test_unknown_field_is_rejected_with_the_valid_names():
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict({"epochz": 3})
    msg = str(e.value)
    assert "unknown field(s) ['epochz']" in msg
    assert "'epochs'" in msg and "'snapshot_every'" in msg


def test_unknown_nested_field_names_the_section():
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict({"optim": {"learning_rate": 0.1}})
    msg = str(e.value)
    assert "['learning_rate']" in msg and "config.optim" in msg and "'lr'" in msg


@pytest.mark.parametrize(
    "d, message",
    [
        ({"epochs": "3"}, "epochs must be an integer, got '3'"),
        ({"epochs": 2.5}, "epochs must be an integer, got 2.5"),
        ({"epochs": True}, "epochs must be an integer, got True"),
        ({"optim": {"lr": "fast"}}, "lr must be a number, got 'fast'"),
        ({"optim": {"lr": False}}, "lr must be a number, got False"),
        ({"data": {"augment": "yes"}}, "augment must be true or false, got 'yes'"),
        (
            {"optim": {"milestones": [1, "2"]}},
            "milestones must be a list of integers, got [1, '2']",
        ),
        ({"snapshot_epochs": "1,2"}, "snapshot_epochs must be a list of integers, got '1,2'"),
        ({"data": {"path": 5}}, "path must be a string, got 5"),
        ({"name": None}, "name must not be null"),
        ({"data": "digits"}, "config.data must be an object"),
    ],
)
def test_wrong_types_are_rejected(d, message):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(d)
    assert str(e.value) == message


def test_integer_where_a_float_is_expected_is_accepted():
    cfg = RunConfig.from_dict({"optim": {"lr": 1}})
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)


def test_json_round_trip():
    cfg = RunConfig(
        name="round trip",
        data=DataConfig(name="folder", path="/data/pets", image_size=64, augment=True),
        model=ModelConfig(name="resnet18"),
        optim=OptimConfig(name="sgd", lr=0.1, schedule="multistep", milestones=[3, 7]),
        epochs=9,
        batch_size=32,
        seed=7,
        device="cpu",
        snapshot_epochs=[1, 5, 9],
        group="sweep-1",
    ).validate()
    text = cfg.to_json()
    assert json.loads(text) == cfg.to_dict()
    back = RunConfig.from_json(text)
    assert back == cfg
    assert back.to_json() == text
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_from_json_rejects_bad_json_and_non_objects():
    with pytest.raises(ConfigError, match="config is not valid JSON"):
        RunConfig.from_json("{epochs: 3")
    with pytest.raises(ConfigError, match="must hold a JSON object, got list"):
        RunConfig.from_json("[1, 2]")


def test_load_names_the_file_on_bad_json(tmp_path):
    path = tmp_path / "my_config.json"
    path.write_text('{"epochs": 3,')
    with pytest.raises(ConfigError) as e:
        RunConfig.load(path)
    assert str(path) in str(e.value) and "not valid JSON" in str(e.value)


def test_load_names_the_file_on_an_invalid_value(tmp_path):
    path = tmp_path / "neg_lr.json"
    path.write_text(json.dumps({"optim": {"lr": -1}}))
    with pytest.raises(ConfigError) as e:
        RunConfig.load(path)
    assert str(path) in str(e.value) and "lr must be > 0, got -1" in str(e.value)


def test_load_of_a_missing_file_names_it(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError, match="cannot read config file .*absent.json"):
        RunConfig.load(path)


def test_load_reads_a_valid_file(tmp_path):
    path = tmp_path / "ok.json"
    cfg = RunConfig(epochs=3, seed=5)
    path.write_text(cfg.to_json())
    assert RunConfig.load(path) == cfg


@pytest.mark.parametrize(
    "epochs, every, expected",
    [
        (12, 2, [1, 2, 4, 6, 8, 10, 12]),
        (7, 3, [1, 3, 6, 7]),
        (3, 5, [1, 3]),
        (1, 2, [1]),
        (4, 1, [1, 2, 3, 4]),
    ],
)
def test_snapshot_schedule_first_every_k_and_last(epochs, every, expected):
    cfg = RunConfig(epochs=epochs, snapshot_every=every).validate()
    assert cfg.snapshot_schedule() == expected


def test_snapshot_schedule_explicit_list_is_sorted_and_deduplicated():
    cfg = RunConfig(epochs=10, snapshot_every=1, snapshot_epochs=[9, 2, 5, 2]).validate()
    assert cfg.snapshot_schedule() == [2, 5, 9]


# --- hostile values (issue 19): every number has a ceiling, every field its type ------------
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 10**20}, "epochs must be in [1, 100000], got 1e+20"),
        ({"cpu_threads": 1_000_000}, "cpu_threads must be in [0, 256], got 1e+06"),
        ({"seed": 2**80}, "seed must be in [0, 4.29497e+09]"),
        ({"optim": {"lr": 1e300}}, "lr must be in [0, 10], got 1e+300"),
        ({"optim": {"lr": 10**400}}, "lr must be a number of sensible size"),
        ({"batch_size": 10**9}, "batch_size must be in [1, 65536]"),
        ({"kind": ["classify"]}, "kind must be one of"),
        ({"epochs": True}, "epochs must be an integer, got True"),
        ({"data": {"val_fraction": "0.1"}}, "val_fraction must be a number, got '0.1'"),
        ({"data": {"classes": ["a", 3]}}, "classes must be a list of strings"),
        ({"optim": {"milestones": [True, 2]}}, "milestones must be a list of integers"),
        ({"snapshot_epochs": [1, "2"]}, "snapshot_epochs must be a list of integers"),
        ({"name": "x" * 20_000}, "name must be at most 10000 characters"),
    ],
)
def test_hostile_config_values_are_refused_with_their_bound(changes, message):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(changes)
    assert message in str(e.value)


def test_an_optional_number_of_the_wrong_type_is_refused():
    from engine.config import SSLConfig

    with pytest.raises(ConfigError, match="crop_scale_min must be a number, got 'abc'"):
        SSLConfig.from_dict({"kind": "ssl", "crop_scale_min": "abc"})
