"""The A-E grid with runs as weights: which file a run gives (backbone.pt, else best.pt), the
group's rows pointing at those files, the table as the seeds tabulate it, and finding the
grids that use a BYOL run."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision

from engine.cli.main import main
from engine.config import ConfigError, DataConfig, ModelConfig, SSLConfig, TransferConfig
from engine.execution import checks, comparisons, executor
from engine.experiments import presets
from engine.experiments.ae_grid import FINE_TUNING, ae_groups_using, ae_table, weights_origin
from engine.models.backbones import build_transfer_net
from engine.store import groups, runs
from engine.store.layout import RunLayout
from engine.train import read_events


@pytest.fixture(autouse=True)
def _weight_cache_made(cache):
    """Every test here has a (created, empty) weight cache: see tests/support/fixtures.py."""


FULL = "train full model (backbone + classifier)"
FROZEN = "fix the backbone, train classifier only"


def resnet18_body(seed: int) -> dict[str, torch.Tensor]:
    """A ResNet-18 backbone's state dict (no fc): what a BYOL run's backbone.pt holds."""
    torch.manual_seed(seed)
    state = torchvision.models.resnet18(weights=None).state_dict()
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def with_checkpoints(run_dir: Path, **files: dict) -> Path:
    folder = RunLayout(run_dir).checkpoints
    folder.mkdir(parents=True, exist_ok=True)
    for name, state in files.items():
        torch.save(state, folder / f"{name}.pt")
    return run_dir


def byol_run(runs_dir: Path, pets: Path, seed: int = 10, backbone: bool = True) -> Path:
    """A BYOL run folder as a finished one leaves it: best.pt (online body, projector and
    target) and, unless told otherwise, backbone.pt."""
    cfg = SSLConfig(data=DataConfig(name="folder", path=str(pets), image_size=16,
                                    classes=["cat", "dog"]))  # fmt: skip
    run_dir = runs.create_run(cfg, runs_dir)
    body, target = resnet18_body(seed), resnet18_body(seed + 1)
    model = {**{f"body.{k}": v for k, v in body.items()},
             **{f"target_body.{k}": v for k, v in target.items()},
             "projector.0.weight": torch.zeros(8, 512)}  # fmt: skip
    files = {"best": {"model": model}}
    if backbone:
        files["backbone"] = body
    return with_checkpoints(run_dir, **files)


def supervised_run(runs_dir: Path, pets: Path, seed: int = 20) -> Path:
    """A transfer run from scratch, with its best.pt (body + head)."""
    cfg = TransferConfig(model=ModelConfig(name="resnet18"), mode="scratch",
                         data=DataConfig(name="folder", path=str(pets), image_size=16))  # fmt: skip
    run_dir = runs.create_run(cfg, runs_dir)
    model = {f"body.{k}": v for k, v in resnet18_body(seed).items()}
    model.update({"head.weight": torch.zeros(2, 512), "head.bias": torch.zeros(2)})
    return with_checkpoints(run_dir, best={"model": model})


def checkpoint(run_dir: Path, name: str) -> str:
    return str((RunLayout(run_dir).checkpoints / name).resolve())


# --- which file a value names ---------------------------------------------------------------------


def test_imagenet_stays_imagenet(runs_dir):
    assert checks.backbone_weights_file("imagenet", runs_dir) == "imagenet"


def test_a_weight_file_is_taken_as_its_absolute_path(runs_dir, tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    torch.save(resnet18_body(0), tmp_path / "work" / "byol.pt")
    monkeypatch.chdir(tmp_path / "work")
    found = checks.backbone_weights_file("byol.pt", runs_dir)
    assert found == str((tmp_path / "work" / "byol.pt").resolve()) and Path(found).is_absolute()
    monkeypatch.setenv("HOME", str(tmp_path / "work"))
    assert checks.backbone_weights_file("~/byol.pt", runs_dir) == found


def test_a_byol_run_gives_its_backbone_file(runs_dir, pets):
    run_dir = byol_run(runs_dir, pets)
    want = checkpoint(run_dir, "backbone.pt")
    for value in (str(run_dir), run_dir.name, run_dir.name[:-2]):  # folder, id, id prefix
        assert checks.backbone_weights_file(value, runs_dir) == want, value


def test_a_run_without_a_backbone_file_gives_its_best_pt(runs_dir, pets):
    for run_dir in (supervised_run(runs_dir, pets), byol_run(runs_dir, pets, backbone=False)):
        assert checks.backbone_weights_file(run_dir.name, runs_dir) == checkpoint(
            run_dir, "best.pt"
        )


def test_a_run_without_checkpoints_is_refused_with_what_is_missing(runs_dir, pets):
    run_dir = runs.create_run(SSLConfig(), runs_dir)
    with pytest.raises(ConfigError) as raised:
        checks.backbone_weights_file(str(run_dir), runs_dir)
    assert str(raised.value) == f"run {run_dir.name} has no checkpoint yet (no checkpoints/best.pt)"


@pytest.mark.parametrize("value", ["nonsense", "/no/such/byol.pt"])
def test_something_that_is_neither_a_file_nor_a_run_is_named(runs_dir, pets, value):
    byol_run(runs_dir, pets)
    with pytest.raises(ConfigError) as raised:
        checks.backbone_weights_file(value, runs_dir)
    assert str(raised.value) == f"weights {value!r}: no such weight file, run folder or run id"


def test_an_ambiguous_run_prefix_names_the_runs_it_matches(runs_dir, pets):
    one, two = byol_run(runs_dir, pets), byol_run(runs_dir, pets)
    prefix = os.path.commonprefix([one.name, two.name])  # at least the date
    assert len(prefix) >= 8
    with pytest.raises(ConfigError) as raised:
        checks.backbone_weights_file(prefix, runs_dir)
    assert one.name in str(raised.value) and two.name in str(raised.value)


# --- an A-E group from runs -----------------------------------------------------------------------


@pytest.fixture
def grid(runs_dir, pets, base):
    """An A-E group: B and D from a supervised run's id, C and E from a BYOL run's folder."""
    supervised, byol = supervised_run(runs_dir, pets), byol_run(runs_dir, pets)
    group = comparisons.create_group("a-e", base, runs_dir, ssl_weights=str(byol),
                                supervised_weights=supervised.name)  # fmt: skip
    return group, supervised, byol


def row_configs(group, runs_dir) -> list[TransferConfig]:
    return [runs.load_config(runs_dir / row.run_id) for row in group.rows]


def test_rows_b_d_and_c_e_start_from_the_files_the_runs_give(runs_dir, grid):
    group, supervised, byol = grid
    assert [(r.label[0], bool(r.run_id), r.note) for r in group.rows] == [
        (s, True, "") for s in "ABCDEF"
    ]
    a, b, c, d, e, f = row_configs(group, runs_dir)
    assert (a.mode, a.backbone_weights) == ("scratch", "none")
    assert (b.mode, b.weights) == ("finetune", checkpoint(supervised, "best.pt"))
    assert (d.mode, d.weights) == ("frozen", checkpoint(supervised, "best.pt"))
    assert (c.mode, c.weights) == ("finetune", checkpoint(byol, "backbone.pt"))
    assert (e.mode, e.weights) == ("frozen", checkpoint(byol, "backbone.pt"))
    assert (f.mode, f.backbone_weights) == ("frozen", "none")  # the control: random init
    assert f.label == "F: random init, frozen (control)"
    # what the runs will load: the BYOL run's online backbone, the supervised run's body
    net, report = build_transfer_net("resnet18", 2, 16, c.backbone_weights)
    assert report.loaded == report.total
    assert torch.equal(net.body.conv1.weight, resnet18_body(10)["conv1.weight"])
    net, _ = build_transfer_net("resnet18", 2, 16, b.backbone_weights)
    assert torch.equal(net.body.conv1.weight, resnet18_body(20)["conv1.weight"])


def test_the_table_says_what_each_row_was_pretrained_on_and_how_it_is_tuned(runs_dir, grid):
    group, supervised, byol = grid
    table = ae_table(group, runs_dir)
    assert [list(r) for r in table] == [
        ["setting", "pre-training", "fine-tuning", "validation accuracy", "test accuracy",
         "vs control (F)", "state", "backbone from"]
    ] * 6  # fmt: skip
    assert [r["setting"] for r in table] == list("ABCDEF")
    pretraining = [r["pre-training"] for r in table]
    assert pretraining[0] == pretraining[5] == "–"
    for i in (1, 3):
        assert pretraining[i] == "supervised, with labels (folder)"
    for i in (2, 4):
        assert pretraining[i] == "BYOL, without labels (folder classes cat,dog)"
    sources = [r["backbone from"] for r in table]
    assert sources == ["", supervised.name, byol.name, supervised.name, byol.name, ""]
    assert [r["fine-tuning"] for r in table] == [FULL, FULL, FULL, FROZEN, FROZEN, FROZEN]
    assert all(r["state"] == "queued" for r in table)
    assert all(r["vs control (F)"] == "" for r in table)  # nothing tested yet
    assert all(r["validation accuracy"] is None and r["test accuracy"] is None for r in table)


def test_a_trained_rows_accuracies_are_its_runs(runs_dir, grid):
    group, _, _ = grid
    row_a = runs_dir / group.rows[0].run_id
    executor.execute(row_a)
    table = ae_table(group, runs_dir)
    val = [e["value"] for e in read_events(RunLayout(row_a).metrics)[0]
           if (e["name"], e["split"]) == ("acc", "val")]  # fmt: skip
    summary = runs.read_status(row_a)["summary"]
    assert table[0]["state"] == "finished"
    assert table[0]["validation accuracy"] == pytest.approx(max(val))
    assert table[0]["test accuracy"] == pytest.approx(summary["test_acc"])
    assert table[1]["state"] == "queued" and table[1]["validation accuracy"] is None
    assert all(r["vs control (F)"] == "" for r in table)  # the control has no test yet


def test_a_tested_row_is_judged_against_the_tested_control(runs_dir, base, resnet18_cached):
    # lr 1e-9: the control's head plateaus at once and stops early (seconds, not 100 epochs).
    still = replace(base, optim=replace(base.optim, lr=1e-9))
    group = comparisons.create_group("a-e", still, runs_dir)
    assert group.rows[5].label == "F: random init, frozen (control)"
    a, f = (runs_dir / group.rows[i].run_id for i in (0, 5))
    for run_dir in (a, f):
        executor.execute(run_dir)
        assert RunLayout(run_dir).test_outcomes.is_file()
    assert runs.read_status(f)["summary"]["early_stopped"] is True
    table = ae_table(group, runs_dir)
    assert [r["state"] for r in table] == [
        "finished", "queued", presets.SSL_WAITING, "queued", presets.SSL_WAITING, "finished",
    ]  # fmt: skip
    verdict = table[0]["vs control (F)"]
    assert verdict.startswith(("beats the control", "below the control", "within noise")), verdict
    assert "p = " in verdict
    assert all(r["vs control (F)"] == "" for r in table[1:])  # untested rows, and F itself


def test_with_imagenet_and_no_byol_run_the_table_says_so(runs_dir, base, resnet18_cached):
    group = comparisons.create_group("a-e", base, runs_dir)
    table = ae_table(group, runs_dir)
    assert [r["pre-training"] for r in table] == [
        "–", "ImageNet, with labels (torchvision)", presets.SSL_WAITING,
        "ImageNet, with labels (torchvision)", presets.SSL_WAITING, "–",
    ]  # fmt: skip
    assert [r["fine-tuning"] for r in table] == [FULL, FULL, "–", FROZEN, "–", FROZEN]
    assert [r["state"] for r in table] == [
        "queued",
        "queued",
        presets.SSL_WAITING,
        "queued",
        presets.SSL_WAITING,
        "queued",
    ]


def test_a_removed_rows_run_is_said_so(runs_dir, grid):
    group, _, _ = grid
    groups.remove_row_run(group, group.rows[2].run_id, runs_dir)
    row = ae_table(group, runs_dir)[2]
    assert (row["setting"], row["state"], row["pre-training"]) == ("C", "removed", "removed")


@pytest.mark.parametrize(
    "weights, origin",
    [
        ("none", "–"),
        ("none (ImageNet weights for resnet18 were not cached at /x)", "–"),
        ("imagenet", "ImageNet, with labels (torchvision)"),
    ],
)
def test_weights_origin_in_words(weights, origin):
    assert weights_origin(weights) == origin


def test_a_weight_file_outside_any_run_is_named_by_its_file(tmp_path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    path = tmp_path / "x" / "y" / "byol.pt"
    path.write_bytes(b"")
    assert weights_origin(str(path)) == "weight file byol.pt"
    (tmp_path / "config.json").write_text("{not json")  # <...>/x/y/file: x is not a run
    assert weights_origin(str(path)) == "weight file byol.pt"


def test_a_byol_run_on_all_the_digits_is_named_without_classes(tmp_path):
    run_dir = runs.create_run(SSLConfig(), tmp_path)
    origin = weights_origin(str(RunLayout(run_dir).checkpoints / "backbone.pt"))
    assert origin == "BYOL, without labels (digits)"
    assert set(FINE_TUNING) == {"scratch", "finetune", "frozen"}


# --- which grids use a BYOL run -------------------------------------------------------------------


def test_the_grids_that_use_a_byol_run_are_found(runs_dir, grid, pets, base):
    group, supervised, byol = grid
    other = byol_run(runs_dir, pets, seed=30)
    assert [g.group_id for g in ae_groups_using(byol, runs_dir)] == [group.group_id]
    assert [g.group_id for g in ae_groups_using(str(byol), runs_dir)] == [group.group_id]
    assert ae_groups_using(other, runs_dir) == []
    second = comparisons.create_group("a-e", base, runs_dir, ssl_weights=other.name,
                                 supervised_weights=supervised.name)  # fmt: skip
    assert [g.group_id for g in ae_groups_using(other, runs_dir)] == [second.group_id]
    assert [g.group_id for g in ae_groups_using(byol, runs_dir)] == [group.group_id]


def test_a_run_whose_name_extends_another_is_not_confused_with_it(runs_dir, pets, base):
    shorter = byol_run(runs_dir, pets)
    longer = shorter.with_name(shorter.name + "-2")
    shutil.copytree(shorter, longer)
    group = comparisons.create_group("a-e", base, runs_dir, ssl_weights=str(longer),
                                supervised_weights=supervised_run(runs_dir, pets).name)  # fmt: skip
    assert [g.group_id for g in ae_groups_using(longer, runs_dir)] == [group.group_id]
    assert ae_groups_using(shorter, runs_dir) == []


def test_other_presets_and_damaged_manifests_are_passed_over(runs_dir, grid, resnet18_cached, base):
    group, _, byol = grid
    comparisons.create_group("finetune-vs-frozen", base, runs_dir, include_scratch=False)
    (groups.groups_dir(runs_dir) / "broken.json").write_text("{")
    assert [g.group_id for g in ae_groups_using(byol, runs_dir)] == [group.group_id]


# --- the command line -----------------------------------------------------------------------------


def test_compare_a_e_takes_both_backbones_as_runs(runs_dir, pets, monkeypatch, capsys):
    supervised, byol = supervised_run(runs_dir, pets), byol_run(runs_dir, pets)
    launched = []
    monkeypatch.setattr(
        comparisons, "launch_group", lambda g, d=None, after=(): launched.append(g) or []
    )
    argv = ["--runs-dir", str(runs_dir), "compare", "--preset", "a-e", "--model", "resnet18",
            "--dataset", "folder", "--data-path", str(pets), "--image-size", "16",
            "--epochs", "1", "--ssl-weights", byol.name, "--supervised-weights", str(supervised),
            "--background"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    (group,) = launched
    assert "group " + group.group_id + ": 6 runs" in capsys.readouterr().out
    weights = [c.backbone_weights for c in row_configs(group, runs_dir)]
    assert weights == [
        "none", checkpoint(supervised, "best.pt"), checkpoint(byol, "backbone.pt"),
        checkpoint(supervised, "best.pt"), checkpoint(byol, "backbone.pt"), "none",
    ]  # fmt: skip


def test_compare_with_a_bad_backbone_exits_2_and_makes_nothing(runs_dir, pets, capsys):
    byol = byol_run(runs_dir, pets)
    argv = ["--runs-dir", str(runs_dir), "compare", "--preset", "a-e", "--model", "resnet18",
            "--dataset", "folder", "--data-path", str(pets), "--image-size", "16",
            "--ssl-weights", byol.name, "--supervised-weights", "nope", "--background"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "weights 'nope': no such weight file, run folder or run id" in err
    assert groups.list_groups(runs_dir) == []
    assert [r.run_id for r in runs.list_runs(runs_dir)] == [byol.name]
