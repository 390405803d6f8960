# The two commands: `make run` and `make test`. Each creates .venv and installs what it needs first,
# so a fresh machine with Python 3.11 and make is enough.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
PORT    ?= 8501

.PHONY: run test bench clean browser

run: $(VENV)/.req-stamp
	$(BIN)/streamlit run app.py --server.port $(PORT)

test: $(VENV)/.dev-stamp browser
	$(BIN)/python -m pytest

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

clean:
	rm -rf $(VENV)
