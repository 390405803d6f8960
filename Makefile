# The two commands: `make run` and `make test`. Each creates .venv and installs what it needs first,
# so a fresh machine with Python 3.11 and make is enough. `make check` is the fast lane to iterate with.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
PORT    ?= 8501

.PHONY: run test check bench clean browser graphviz

run: $(VENV)/.req-stamp graphviz
	$(BIN)/streamlit run app.py --server.port $(PORT)

# The whole suite in three parts, each printing its slowest tests (where to look when it grows); all three always
# run and the target fails if any did:
#   1. everything but the browser and `serial` tests on two worker processes with one torch thread each (a module's
#      tests stay on one worker: module fixtures such as the Ray head start once);
#   2. the browser tests on two workers too (each module serves the app and drives its own Chromium; a module's
#      tests stay together, so two people's worth of pages at a time);
#   3. the `serial` tests one at a time: the load benches, which measure latency, and the trainings that use both
#      cores (beside another worker the GAP recipe's retrain took 812 s instead of 150).
test: $(VENV)/.dev-stamp browser graphviz
	@status=0; \
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile -m "not browser and not serial" --durations=25 \
	  || status=1; \
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "browser and not serial" --durations=10 || status=1; \
	$(BIN)/python -m pytest -m serial --durations=10 || status=1; \
	exit $$status

# The fast lane (at most 3 minutes on a 2-core machine): no browser, load or training tests, the fuzz at the
# `check` profile's 50 examples instead of 1,000 and the first case of each parametrised sweep
# (tests/conftest.py), two worker processes with one torch thread each (so they do not fight over the two cores).
# `make test` stays the whole suite.
check: $(VENV)/.dev-stamp
	HYPOTHESIS_PROFILE=check CHECK_CASES=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 \
	  -m "not browser and not slow and not training" --durations=10

bench: $(VENV)/.dev-stamp
	$(BIN)/python bench/analysis.py

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when a requirements file changed (the stamp is older than it).
$(VENV)/.req-stamp: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-stamp: requirements-dev.txt $(VENV)/.req-stamp
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# Browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "Could not install chromium; browser tests will be skipped"; }

# The diagram downloads as SVG through Graphviz's `dot` (Debian's graphviz); without it the page offers the DOT
# source and says so.
graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  echo "Installing Debian's graphviz for the diagram's SVG download"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
	  || echo "Could not install graphviz; the diagram downloads as DOT source"; }

clean:
	rm -rf $(VENV)
