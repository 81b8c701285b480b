"""Runs of particular models trained end to end in this process, a few seconds each: a ResNeXt
run builds what its config asks, and a dynamic-filter run resumes from best.pt. The models
themselves: tests/unit/test_architectures.py and tests/unit/test_dynamic_filter.py."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from engine.config import DynamicFilterConfig, ModelConfig
from engine.execution import executor
from engine.store import runs
from engine.store.layout import RunLayout
from engine.train import load_checkpoint


def test_a_resnext_run_builds_what_its_config_asks(tmp_path):
    from engine.config import DataConfig, RunConfig
    from engine.execution import executor
    from engine.inspect.loading import load_run_model
    from engine.store import runs

    cfg = RunConfig(model=ModelConfig(name="resnext18", cardinality=4, group_width=8),
                    data=DataConfig(image_size=16), epochs=1, batch_size=64, device="cpu",
                    snapshot_size=20)  # fmt: skip
    run_dir = runs.create_run(cfg, tmp_path)
    executor.execute(run_dir)
    model = load_run_model(run_dir).model
    assert {m.groups for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1} == {4}


def test_resume_from_best_restores_model_and_optimiser(runs_dir):
    cfg = DynamicFilterConfig(epochs=2, batch_size=128, snapshot_size=10)
    run_dir = runs.create_run(cfg, runs_dir)
    executor.execute(run_dir)
    layout = RunLayout(run_dir)
    best = load_checkpoint(layout.best_checkpoint)
    best_bytes = layout.best_checkpoint.read_bytes()
    assert best["optimizer"]["state"], "the best checkpoint holds the optimiser's state"
    best_epoch = best["progress"]["epoch"]
    # Train on from best.pt to 3 epochs: the resumed run starts from best's exact state.
    config = json.loads(layout.config.read_text())
    config["epochs"] = 3
    layout.config.write_text(json.dumps(config))
    seen = {}
    from engine.train import trainer as trainer_module

    original = trainer_module.Trainer.resume

    def spy(self, path):
        original(self, path)
        seen["path"] = str(path)
        seen["last_is_best"] = layout.last_checkpoint.read_bytes() == best_bytes
        seen["model"] = {k: v.clone() for k, v in self.model.state_dict().items()}
        seen["optimizer"] = copy.deepcopy(self.optimizer.state_dict())  # training mutates it

    trainer_module.Trainer.resume = spy
    try:
        summary = executor.execute(run_dir, resume=True, resume_from="best.pt")
    finally:
        trainer_module.Trainer.resume = original
    assert seen["path"].endswith("best.pt")
    assert seen["last_is_best"]  # an interrupted resume would restart from best, not from later
    for k, v in best["model"].items():
        torch.testing.assert_close(seen["model"][k], v)
    saved, restored = best["optimizer"]["state"], seen["optimizer"]["state"]
    assert saved.keys() == restored.keys()
    for k in saved:
        torch.testing.assert_close(restored[k]["exp_avg"], saved[k]["exp_avg"])
    assert summary["epochs_done"] == 3
    # --from best made best.pt the run's last.pt first: an interrupted resume restarts there.
    with pytest.raises(Exception, match="cannot resume from .*best.pt: it does not exist"):
        layout.best_checkpoint.unlink()
        executor.execute(run_dir, resume=True, resume_from="best.pt")
    epochs = [
        e["epoch"] for e in runs.read_metrics(run_dir) if (e["name"], e["split"]) == ("acc", "val")
    ]
    assert epochs == list(range(1, best_epoch + 1)) + list(range(best_epoch + 1, 4))
