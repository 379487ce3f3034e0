# gbpipe: `make help` lists the targets. Every stage target calls the gbpipe CLI.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
GBPIPE := $(VENV)/bin/gbpipe
EXP    ?= adult
CONFIG ?= configs/$(EXP).toml
RUN    ?= runs/$(EXP)
Q      ?=
TRIALS ?= 20

.DEFAULT_GOAL := help
.PHONY: help setup data features tune train predict importance select ensemble report run bench test lint clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: EXP=$(EXP) (configs/<EXP>.toml), Q=-q for quiet, TRIALS=$(TRIALS)"

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench]'
	touch $@

setup: $(VENV)/.installed ## create the virtual environment and install gbpipe with pinned versions

data: setup ## put the real datasets under data/raw ($$GBPIPE_DATA_DIR, ../shared/data, else download)
	$(GBPIPE) data $(Q)

train: data ## K-fold OOF LightGBM on $(EXP); writes runs/$(EXP)/<run_id>/
	$(GBPIPE) train --config $(CONFIG) $(Q)

run: data train ## the main job end to end

test: setup ## the test suite (what CI runs)
	$(PY) -m pytest -q

lint: setup ## static checks
	$(PY) -m ruff check pipeline features tests bench

clean: ## remove runs and caches (keeps data/raw and the venv)
	rm -rf runs .pytest_cache
