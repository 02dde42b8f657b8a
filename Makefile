# Quick start: `make run` (set-up, then the app) and `make test` (set-up, then the tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
PORT ?= 8501

.PHONY: install browser run test bench paper-table clean

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

# Debian's chromium for the end-to-end browser test (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null; fi; }

# The background request runs app.py once as soon as the server is up (the script health
# check), so torch is imported and the default model cached before the first visitor.
run: install
	( sleep 3; $(PY) -c "import urllib.request as u; u.urlopen('http://localhost:$(PORT)/_stcore/script-health-check', timeout=180)" >/dev/null 2>&1 ) &
	$(PY) -m streamlit run app.py --server.port $(PORT)

test: install browser
	$(PY) -m pytest

bench: install
	$(PY) bench/bench_graph.py
	$(PY) bench/bench_cost.py
	$(PY) bench/bench_finetune.py

paper-table: install
	$(PY) -m cprune_core experiment paper-table

clean:
	rm -rf .pytest_cache screenshots
