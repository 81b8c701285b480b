"""Transfer runs, trained here: what trains in each mode (frozen, finetune, scratch), features
computed once for a frozen backbone, a run's checkpoint starting another, and resume. The
config: tests/unit/experiments/test_transfer_config.py."""

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from engine.config import DataConfig, ModelConfig, TransferConfig
from engine.data import BatchLoader, load_dataset
from engine.execution import executor
from engine.experiments import transfer
from engine.experiments.transfer import FeatureBank, prepare
from engine.models.backbones import get_backbone
from engine.store import runs
from engine.store.layout import RunLayout
from engine.train import load_checkpoint
from tests.support.helpers import val_events

CPU = torch.device("cpu")
HEAD_PARAMS = 512 * 3 + 3  # resnet18's 512 features -> 3 classes
BODY_PARAMS = sum(
    p.numel()
    for n, p in torchvision.models.resnet18().named_parameters()
    if not n.startswith("fc.")
)


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """3 classes x 24 noisy solid-colour 32x32 images: 48 train / 12 val / 12 test."""
    root = tmp_path_factory.mktemp("pets")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["bird", "cat", "dog"]):
        (root / name).mkdir()
        base = np.full(3, 60.0)
        base[c] = 200.0
        for i in range(24):
            pixels = np.clip(base + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A stand-in for resnet18's ImageNet file: a torchvision state dict, BatchNorm statistics
    set away from their initial values so that a change to them shows."""
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    for key, value in state.items():
        if key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
        elif key.endswith("running_mean"):
            value.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("weights") / "resnet18-pretrained.pth"
    torch.save(state, path)
    return path


def _cfg(pets, weights_file, **overrides) -> TransferConfig:
    cfg = TransferConfig(
        model=ModelConfig(name="resnet18"),
        data=DataConfig(name="folder", path=str(pets), image_size=32),
        epochs=2,
        batch_size=16,
        seed=0,
        device="cpu",
        snapshot_every=1,
        log_every=1,
        weights=str(weights_file),
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg.validate()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pets, weights_file):
    """Runs made once for the module: name -> run folder, trained in this process."""
    root = tmp_path_factory.mktemp("runs")
    variants = {
        "frozen": dict(mode="frozen"),
        "frozen_images": dict(mode="frozen", precompute_features=False),
        "finetune": dict(mode="finetune", backbone_lr_scale=0.1),
    }
    done = {}
    for name, overrides in variants.items():
        run_dir = runs.create_run(_cfg(pets, weights_file, **overrides), root)
        executor.execute(run_dir)
        assert runs.read_status(run_dir)["state"] == "finished", RunLayout(run_dir).log
        done[name] = run_dir
    return done


def _body(state: dict) -> dict:
    return {k.removeprefix("body."): v for k, v in state.items() if k.startswith("body.")}


def _changed(state: dict, reference: dict) -> list[str]:
    return [
        k for k, v in reference.items() if not k.startswith("fc.") and not torch.equal(state[k], v)
    ]


# --- what trains, in each mode ---------------------------------------------------------------------


def test_frozen_leaves_every_backbone_tensor_as_loaded_and_trains_only_the_head(
    trained, weights_file
):
    reference = torch.load(weights_file, weights_only=True)
    layout = RunLayout(trained["frozen"])
    for ckpt in (layout.last_checkpoint, layout.best_checkpoint):
        state = load_checkpoint(ckpt)
        assert _changed(_body(state["model"]), reference) == []  # BatchNorm statistics too
        # Only the head's weight and bias were in the optimiser, and they took steps.
        optim = state["optimizer"]
        assert [len(g["params"]) for g in optim["param_groups"]] == [2]
        assert len(optim["state"]) == 2
        assert all(s["step"] > 0 and s["exp_avg"].abs().sum() > 0 for s in optim["state"].values())
    status = runs.read_status(trained["frozen"])
    for info in (status["model_info"], status["summary"]):
        assert info["trainable_params"] == HEAD_PARAMS
        assert info["total_params"] == HEAD_PARAMS + BODY_PARAMS


def test_finetune_changes_the_backbone_at_its_lower_learning_rate(trained, weights_file):
    reference = torch.load(weights_file, weights_only=True)
    state = load_checkpoint(RunLayout(trained["finetune"]).last_checkpoint)
    changed = _changed(_body(state["model"]), reference)
    assert "conv1.weight" in changed and "layer4.1.conv2.weight" in changed
    assert "bn1.running_mean" in changed  # BatchNorm follows the new data
    head, body = state["optimizer"]["param_groups"]
    assert body["lr"] == pytest.approx(0.1 * head["lr"])  # the ratio survives the schedule
    summary = runs.read_status(trained["finetune"])["summary"]
    assert summary["trainable_params"] == summary["total_params"]
    assert "feature_seconds" not in summary


def test_backbone_lr_scale_gives_the_body_its_own_parameter_group(pets, weights_file):
    splits = load_dataset(_cfg(pets, weights_file).data)
    cfg = _cfg(pets, weights_file, mode="finetune", backbone_lr_scale=0.1)
    p = prepare(cfg, splits, CPU)
    head, body = p.optimizer.param_groups
    assert head["lr"] == cfg.optim.lr and body["lr"] == pytest.approx(0.1 * cfg.optim.lr)
    assert {id(q) for q in head["params"]} == {id(q) for q in p.model.head.parameters()}
    assert {id(q) for q in body["params"]} == {id(q) for q in p.model.body.parameters()}

    p = prepare(_cfg(pets, weights_file, mode="finetune"), splits, CPU)  # scale 1: one group
    assert len(p.optimizer.param_groups) == 1
    # From scratch there is no pretrained backbone to protect: the scale does not apply.
    p = prepare(_cfg(pets, weights_file, mode="scratch", backbone_lr_scale=0.1), splits, CPU)
    assert [g["lr"] for g in p.optimizer.param_groups] == [cfg.optim.lr]
    assert len(p.optimizer.param_groups[0]["params"]) == len(list(p.model.parameters()))


def test_scratch_ignores_the_weights(pets, weights_file):
    splits = load_dataset(_cfg(pets, weights_file).data)
    reference = torch.load(weights_file, weights_only=True)
    for weights in (str(weights_file), "/nowhere/at/all.pt"):
        cfg = _cfg(pets, weights_file, mode="scratch", weights=weights)
        assert cfg.backbone_weights == "none"
        p = prepare(cfg, splits, CPU)
        assert p.info["weights"] == "none"
        assert p.info["weights_report"] == "random initialisation"
        assert "conv1.weight" in _changed(p.model.body.state_dict(), reference)
        assert p.info["trainable_params"] == p.info["total_params"]


# --- frozen: features computed once ----------------------------------------------------------------


def test_precomputed_features_train_exactly_as_images_through_a_frozen_backbone(trained):
    with_bank, with_images = val_events(trained["frozen"]), val_events(trained["frozen_images"])
    assert [e[:4] for e in with_bank] == [e[:4] for e in with_images]
    assert {e[1] for e in with_bank} == {"val", "test"} and len(with_bank) == 2 * 2 + 2
    for a, b in zip(with_bank, with_images, strict=True):
        assert a[4] == pytest.approx(b[4], abs=1e-4), a[:4]

    def train_losses(run_dir):
        return [
            (e["step"], e["value"])
            for e in runs.read_metrics(run_dir)
            if (e["name"], e["split"]) == ("loss", "train")
        ]

    a, b = train_losses(trained["frozen"]), train_losses(trained["frozen_images"])
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 7))
    np.testing.assert_allclose([v for _, v in a], [v for _, v in b], atol=1e-4)
    # The snapshots embed the same features either way.
    for epoch in (1, 2):
        f = [
            np.load(RunLayout(trained[k]).embedding_file(epoch))["features"]
            for k in ("frozen", "frozen_images")
        ]
        np.testing.assert_allclose(f[0], f[1], atol=1e-4)


def test_precomputed_run_saves_the_whole_model_and_says_how_long_features_took(trained):
    model = load_checkpoint(RunLayout(trained["frozen"]).best_checkpoint)["model"]
    images_model = load_checkpoint(RunLayout(trained["frozen_images"]).best_checkpoint)["model"]
    assert sorted(model) == sorted(images_model)
    assert {
        "head.weight",
        "head.bias",
        "body.conv1.weight",
        "body.layer4.1.bn2.running_var",
    } <= set(model)
    assert model["head.weight"].shape == (3, 512)

    summary = runs.read_status(trained["frozen"])["summary"]
    assert summary["backbone"] == "resnet18" and summary["mode"] == "frozen"
    assert summary["feature_seconds"] > 0
    assert summary["trainable_params"] == HEAD_PARAMS < summary["total_params"]
    assert summary["classes"] == ["bird", "cat", "dog"] and "test_acc" in summary
    assert "feature_seconds" not in runs.read_status(trained["frozen_images"])["summary"]


def test_a_runs_best_checkpoint_starts_another_run(trained, pets):
    best = RunLayout(trained["finetune"]).best_checkpoint
    cfg = _cfg(pets, best, mode="frozen")
    splits = load_dataset(cfg.data)
    p = prepare(cfg, splits, CPU)
    saved = _body(load_checkpoint(best)["model"])
    n = len(saved)
    assert f"loaded {n} of the backbone's {n} tensors" in p.info["weights_report"]
    assert _changed(p.model.body.state_dict(), saved) == []


def test_feature_bank_looks_features_up_by_sample_id(pets, weights_file):
    cfg = _cfg(pets, weights_file, mode="frozen", precompute_features=False)
    splits = load_dataset(cfg.data)
    p = prepare(cfg, splits, CPU)
    p.model.eval()
    spec = get_backbone("resnet18")

    def images(data, shuffle=False, augment=False):
        return BatchLoader(data, 5, list(spec.mean), list(spec.std), CPU, shuffle, augment, 0)

    bank = FeatureBank(p.model, splits, images)
    assert bank.features.shape == (72, 512)
    part = splits.val.subset(torch.tensor([3, 0, 7]))  # any order, any subset
    taken = bank.take(part)
    with torch.no_grad():
        direct = p.model.body(next(iter(images(part)))[0])
    torch.testing.assert_close(taken.images, direct, atol=1e-4, rtol=1e-4)
    assert torch.equal(taken.labels, part.labels) and torch.equal(taken.ids, part.ids)


@pytest.mark.parametrize("variant", ["frozen", "finetune"])
def test_a_stopped_transfer_run_resumes_to_the_same_numbers(
    trained, pets, weights_file, tmp_path, variant
):
    overrides = {"frozen": dict(mode="frozen"), "finetune": dict(backbone_lr_scale=0.1)}
    cfg = _cfg(pets, weights_file, **overrides[variant])
    assert runs.load_config(trained[variant]) == cfg  # the same run as the module's
    run_dir = runs.create_run(cfg, tmp_path / "runs")
    steps = []
    summary = transfer.run(
        cfg, run_dir, on_step=lambda s: steps.append(s.global_step),
        should_stop=lambda: steps[-1] == 4,  # a batch into epoch 2 (3 batches an epoch)
    )  # fmt: skip
    assert "test_acc" not in summary
    transfer.run(cfg, run_dir, resume=True)
    resumed, uninterrupted = val_events(run_dir), val_events(trained[variant])
    assert [e[:4] for e in resumed] == [e[:4] for e in uninterrupted]
    for a, b in zip(resumed, uninterrupted, strict=True):
        assert a[4] == pytest.approx(b[4], abs=1e-5), a[:4]
