# Quick start: `make run` (set-up, then the app) and `make test` (set-up, then the tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
DEV_STAMP := $(VENV)/.installed-dev-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | cksum | cut -d' ' -f1)
LOG := $(VENV)/install.log
PORT ?= 8501
# Every target that starts the app runs `streamlit run app.py`: app.py's st.App imports torch and builds the
# default model in the server process as it starts (ui/startup.py), before the first visitor arrives.

# Is there a GPU? Where nvidia-smi lists none (or with `make install GPU=no`), torch and torchvision are looked for
# on PyTorch's CPU index too: its CPU-only build (2.14.1+cpu, which pip ranks above PyPI's 2.14.1) has no CUDA
# libraries (3.2 GB). Where that index cannot be reached, pip warns and takes PyPI's, the CUDA build whatever the
# machine: its CUDA libraries stay (torch links to them). Either way torch goes in without triton, the 0.9 GB
# compiler of torch.compile's GPU kernels (nothing here calls torch.compile; torch 2.14.1 imports and runs without
# it). docs/benchmarks.md, "Installing".
GPU ?= $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo yes || echo no)
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
# The lines of requirements.txt that bring torch in.
TORCH_LINES := ^(torch|torchvision|torch-pruning)==
# torch's, torchvision's and torch-pruning's own requirements for this machine, less triton and torch itself.
define TORCH_DEPENDENCIES
import importlib.metadata as metadata
from packaging.requirements import Requirement
for name in ("torch", "torchvision", "torch-pruning"):
    for requirement in map(Requirement, metadata.requires(name) or []):
        if requirement.name not in ("torch", "triton") and (requirement.marker is None
                                                           or requirement.marker.evaluate({"extra": ""})):
            print(requirement)
endef
export TORCH_DEPENDENCIES

.PHONY: install install-dev browser run serve dev test test-fast lint bench gpu-check paper-table importance clean

# What the app and the `cprune` command need: requirements.txt (torch the GPU's way or the CPU's, above), then
# this project itself (editable, which also installs the `cprune` command). pip's output goes to $(LOG), shown
# only on failure.
install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing the app's requirements into $(VENV) (GPU: $(GPU); about 2 minutes from a wheel cache, longer to download; log: $(LOG))"
	@{ $(PIP) install --upgrade pip packaging && $(if $(filter yes,$(GPU)),$(PIP) install -r requirements.txt, \
	     $(PIP) install --no-deps --extra-index-url $(TORCH_CPU_INDEX) $$(grep -E '$(TORCH_LINES)' requirements.txt) \
	     && $(PY) -c "$$TORCH_DEPENDENCIES" > $(VENV)/torch-dependencies.txt \
	     && grep -vE '$(TORCH_LINES)' requirements.txt > $(VENV)/requirements-without-torch.txt \
	     && $(PIP) install -r $(VENV)/torch-dependencies.txt -r $(VENV)/requirements-without-torch.txt) \
	   && $(PIP) install --no-deps -e . ; } > $(LOG) 2>&1 || { tail -n 30 $(LOG); exit 1; }
	@rm -f $(VENV)/.installed-[0-9]* && touch $@

# Tests, lint and Ray on top: requirements-dev.txt (none of it brings torch in again).
install-dev: $(DEV_STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	@echo "Installing the test and lint tools into $(VENV) (log: $(LOG))"
	@$(PIP) install -r requirements-dev.txt > $(LOG) 2>&1 || { tail -n 30 $(LOG); exit 1; }
	@rm -f $(VENV)/.installed-dev-* && touch $@

# Debian's chromium for the end-to-end browser test (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null; fi; }

# The app on this machine only (http://localhost:$(PORT)).
run: install
	@$(PY) -m streamlit run app.py --server.port $(PORT) --server.address localhost

# The app for a classroom: every interface of this machine. Read docs/serving.md, "Serving to a network".
serve: install
	@echo "Serving CPrune on every network interface, port $(PORT): anyone who can reach this machine can use it."
	@CPRUNE_DOWNLOADS=$${CPRUNE_DOWNLOADS:-off} $(PY) -m streamlit run app.py --server.port $(PORT) --server.address 0.0.0.0 --client.showErrorDetails none

# Development: reload pages when a source file changes (the watcher is off by default).
dev: install
	@$(PY) -m streamlit run app.py --server.port $(PORT) --server.address localhost \
	  --server.fileWatcherType auto --server.runOnSave true

lint: install-dev
	$(PY) -m ruff check .

# Everything: ruff, then every test (the browser's, Ray's and the slow ones included). What CI runs.
test: install-dev browser lint
	$(PY) -m pytest

# The fast lane while working: ruff, then the unit and AppTest tests (no browser, no Ray, nothing slow: see
# tests/conftest.py), a test file per worker, two workers of one torch thread each: under 3 minutes on 2 cores.
test-fast: install-dev lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not browser and not ray and not slow" -n 2 --dist loadfile

# Each benchmark runs as a module from the checkout's root, so it measures this checkout's code.
bench: install-dev browser
	$(PY) -m bench.bench_graph
	$(PY) -m bench.bench_first_view
	$(PY) -m bench.bench_cli
	$(PY) -m bench.bench_cost
	$(PY) -m bench.bench_finetune
	$(PY) -m bench.bench_ablation
	$(PY) -m bench.bench_kept_geometry
	$(PY) -m bench.bench_atlas --only sharing
	$(PY) -m bench.bench_atlas --only quick --ray
	$(PY) -m bench.bench_weights
	$(PY) -m bench.bench_ray
	$(PY) -m bench.bench_app

# The GPU path, on a machine with a CUDA GPU (docs/gpu.md); exits non-zero if a check fails.
gpu-check: install
	$(PY) bench/gpu_check.py

paper-table: install
	$(PY) -m cprune_core experiment paper-table

importance: install
	$(PY) -m cprune_core experiment importance

clean:
	rm -rf .pytest_cache .ruff_cache screenshots
