# Quick start: `make run` (set-up, then the app) and `make test` (set-up, then the tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
LOG := $(VENV)/install.log
PORT ?= 8501
# Every target that starts the app runs `streamlit run app.py`: app.py's st.App imports torch and builds the
# default model in the server process as it starts (ui/startup.py), before the first visitor arrives.

.PHONY: install browser run serve dev test test-fast lint bench gpu-check paper-table importance clean

# Everything a fresh machine needs: the pinned requirements, then this project itself (editable,
# which also installs the `cprune` command). pip's output goes to $(LOG), shown only on failure.
install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing into $(VENV) (the first time takes several minutes; log: $(LOG))"
	@{ $(PY) -m pip install --upgrade pip && $(PY) -m pip install -r requirements.txt \
	   && $(PY) -m pip install --no-deps -e . ; } > $(LOG) 2>&1 || { tail -n 30 $(LOG); exit 1; }
	@rm -f $(VENV)/.installed-* && touch $@

# Debian's chromium for the end-to-end browser test (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null; fi; }

# The app on this machine only (http://localhost:$(PORT)).
run: install
	@$(PY) -m streamlit run app.py --server.port $(PORT) --server.address localhost

# The app for a classroom: every interface of this machine. Read "Serving to a network" in the README.
serve: install
	@echo "Serving CPrune on every network interface, port $(PORT): anyone who can reach this machine can use it."
	@CPRUNE_DOWNLOADS=$${CPRUNE_DOWNLOADS:-off} $(PY) -m streamlit run app.py --server.port $(PORT) --server.address 0.0.0.0 --client.showErrorDetails none

# Development: reload pages when a source file changes (the watcher is off by default).
dev: install
	@$(PY) -m streamlit run app.py --server.port $(PORT) --server.address localhost \
	  --server.fileWatcherType auto --server.runOnSave true

lint: install
	$(PY) -m ruff check .

# Everything: ruff, then every test (the browser's, Ray's and the slow ones included). What CI runs.
test: install browser lint
	$(PY) -m pytest

# The fast lane while working: ruff, then the unit and AppTest tests (no browser, no Ray, nothing slow: see
# tests/conftest.py), a test file per worker, two workers of one torch thread each: under 3 minutes on 2 cores.
test-fast: install lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not browser and not ray and not slow" -n 2 --dist loadfile

# Each benchmark runs as a module from the checkout's root, so it measures this checkout's code.
bench: install browser
	$(PY) -m bench.bench_graph
	$(PY) -m bench.bench_cost
	$(PY) -m bench.bench_finetune
	$(PY) -m bench.bench_ablation
	$(PY) -m bench.bench_kept_geometry
	$(PY) -m bench.bench_atlas --only sharing
	$(PY) -m bench.bench_atlas --only quick --ray
	$(PY) -m bench.bench_weights
	$(PY) -m bench.bench_ray
	$(PY) -m bench.bench_app

# The GPU path, on a machine with a CUDA GPU (README: "The GPU check"); exits non-zero if a check fails.
gpu-check: install
	$(PY) bench/gpu_check.py

paper-table: install
	$(PY) -m cprune_core experiment paper-table

importance: install
	$(PY) -m cprune_core experiment importance

clean:
	rm -rf .pytest_cache .ruff_cache screenshots
