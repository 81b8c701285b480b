"""The Home page imports the element code of the pages a click opens while it is read
(dashboard.components.preload), and the server skips the per-run work that delayed every
script run (.streamlit/config.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from dashboard.components import preload
from tests.support.pages import page

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_streamlit_ships_the_chunks_it_preloads():
    files = preload.chunk_files()
    names = {f.split(".")[0] for f in files}
    # A Streamlit upgrade that renames them would silently bring the 1.8 s back.
    assert {"PlotlyChart", "Selectbox", "NumberInput", "Progress"} <= names
    assert all(f.endswith(".js") for f in files)


def test_home_imports_them_in_the_browser(runs_dir):
    at = page("home").run()
    assert not at.exception
    scripts = [h.proto.body for h in at.get("html") if "import(base + f)" in h.proto.body]
    assert len(scripts) == 1
    assert all(f in scripts[0] for f in preload.chunk_files())


def test_the_server_runs_no_full_collection_or_module_scan_after_each_script_run():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
    assert config["server"]["fileWatcherType"] == "none"


def test_the_server_imports_torch_and_scipy_stats_in_the_background_at_start():
    """In a fresh interpreter: after the warm-up thread, the modules a first start and a first
    comparison page would import are there (scipy.stats alone took 1.0-1.4 s)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from dashboard.components.cache import warm_imports\n"
        "assert 'scipy.stats' not in sys.modules and 'torch' not in sys.modules\n"
        "warm_imports().join()\n"
        "print('scipy.stats' in sys.modules, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "WORKBENCH_PREWARM": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True"]
