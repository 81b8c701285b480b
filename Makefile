# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
ADDRESS ?= localhost
STAMP := $(VENV)/.installed

.PHONY: run test test-unit test-slow test-e2e bench lint format clean data

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt pyproject.toml
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $(STAMP)

run: $(STAMP)
	@echo "Dashboard: http://$(ADDRESS):$(PORT)  (Ctrl+C stops it; runs keep going)"
	$(PY) -m streamlit run dashboard/app.py --server.port $(PORT) --server.address $(ADDRESS) --server.headless true

# Everything but slow and e2e: tests/unit, tests/integration and tests/dashboard.
test: $(STAMP)
	@$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; fi; exit $$rc

# The fast tier alone (under a minute): no subprocess, no launched run, no browser.
test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-e2e: $(STAMP)
	$(PY) -m pip install -q playwright==1.65.2
	$(PY) -m pytest -q -m e2e

bench: $(STAMP)
	$(PY) bench/trainer_overhead.py
	$(PY) bench/data_path.py
	$(PY) bench/projections.py
	$(PY) bench/first_umap.py
	$(PY) bench/dashboard_rerun.py
	$(PY) bench/explorer_scale.py
	$(PY) bench/frozen_features.py
	$(PY) bench/quick_demos.py
	$(PY) bench/home_rerun.py
	$(PY) bench/feature_vis.py
	$(PY) bench/fewshot_eval.py
	@if [ -x /usr/bin/chromium ] && $(PY) -c "import playwright" 2>/dev/null; then \
		$(PY) bench/demo_timing.py; \
	else echo "skipping bench/demo_timing.py: needs chromium and playwright (make test-e2e installs it)"; fi

lint: $(STAMP)
	$(PY) -m ruff check engine dashboard tests bench
	$(PY) -m ruff format --check engine dashboard tests bench
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(PY) -m ruff format engine dashboard tests bench
	$(PY) -m ruff check --fix engine dashboard tests bench

# Fashion-MNIST for the benchmark tables: Debian's package where apt and root are at hand,
# else where to download the four IDX files and where to put them.
data:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
		echo "Fashion-MNIST is in /usr/share/datasets/fashion-mnist/"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
		&& apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; then \
		echo "installed Fashion-MNIST in /usr/share/datasets/fashion-mnist/"; \
	else \
		echo "Download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,"; \
		echo "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from"; \
		echo "https://github.com/zalandoresearch/fashion-mnist (data/fashion/) and put them in"; \
		echo "$(CURDIR)/data/fashion-mnist/ (or: sudo apt-get install dataset-fashion-mnist)"; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
