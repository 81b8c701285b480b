"""A comparison group as one HTML page (issue 13): its table, curves and configs, offline."""

from __future__ import annotations

import json
import re
import time

import pytest

from engine.cli.main import main
from engine.execution import executor
from engine.sharing.report import group_report
from engine.store import runs
from engine.store.groups import Group, Row, save_group


@pytest.fixture
def group(tiny_config, runs_dir):
    made = []
    for lr in (3e-3, 1e-2):
        cfg = tiny_config(epochs=2)
        cfg.optim.lr = lr
        run_dir = runs.create_run(cfg.validate(), runs_dir)
        executor.execute(run_dir)
        made.append(run_dir)
    g = Group("g-test", "two learning rates <b>", "ablation", time.time(),
              [Row("lr 3e-3", made[0].name), Row("lr 1e-2", made[1].name),
               Row("waits", None, note="not started")])  # fmt: skip
    save_group(g, runs_dir)
    return g, made


def test_the_report_holds_the_table_the_curves_and_the_configs(group, runs_dir):
    g, made = group
    page = group_report(g, runs_dir)
    for label, run_dir in zip(("lr 3e-3", "lr 1e-2"), made, strict=True):
        test_acc = runs.read_status(run_dir)["summary"]["test_acc"]
        assert re.search(rf"<td>{re.escape(label)}</td>.*?<td>{test_acc:.2%}</td>", page, re.S)
        assert run_dir.name in page
    assert "<td>waits</td>" in page
    assert "two learning rates &lt;b&gt;" in page  # names are escaped
    # plotly.js is inside: the page opens offline; the figure has each run's validation curve.
    assert not re.search(r"<script[^>]*src=", page) and len(page) > 1_000_000
    spec = json.loads(
        re.search(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\]),\s*\{", page, re.S)[1]
    )
    names = [t["name"] for t in spec]
    assert "lr 3e-3 · acc val" in names and "lr 1e-2 · acc val" in names
    assert json.loads(runs.load_config(made[0]).to_json())["optim"]["lr"] == 3e-3
    assert "&quot;lr&quot;: 0.003" in page or '"lr": 0.003' in page


def test_the_cli_writes_the_report(group, runs_dir, tmp_path, capsys):
    g, _ = group
    out = tmp_path / "report.html"
    assert main(["--runs-dir", str(runs_dir), "groups", g.group_id, "--report", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert out.read_text().startswith("<!doctype html>")
    assert main(["--runs-dir", str(runs_dir), "groups", "--report", str(out)]) == 2
