# gbpipe: `make help` lists the targets. Every stage target calls the gbpipe CLI on configs/$(EXP).toml.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
GBPIPE := $(VENV)/bin/gbpipe
EXP    ?= retail
CONFIG ?= configs/$(EXP).toml
RUN    ?= runs/$(EXP)
Q      ?=
TRIALS ?= 10
BUDGET ?= 10m
AT     ?= end
PARAMS ?= runs/$(EXP)/tune/default/best_params.json
INPUT  ?= runs/$(EXP)/predict_input.parquet
OUTPUT ?= predictions/$(EXP).csv

.DEFAULT_GOAL := help
.PHONY: help setup data features tune train predict score importance drift select ensemble auto report runs run after-train bench test lint clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: EXP=$(EXP) (configs/<EXP>.toml), Q=-q (quiet), TRIALS=$(TRIALS), BUDGET=$(BUDGET)"

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench,mlflow,dask]'
	touch $@

setup: $(VENV)/.installed ## create the virtual environment and install gbpipe with pinned versions

data: setup ## put the real datasets under data/raw ($$GBPIPE_DATA_DIR, ../shared/data, else download)
	$(GBPIPE) data $(Q)

features: data ## build (or reuse) the point-in-time feature table of $(EXP); its test rows -> $(INPUT)
	$(GBPIPE) features --config $(CONFIG) --test-rows $(INPUT) $(Q)

tune: data ## Optuna TPE search on the OOF score ($(TRIALS) trials; continues the study if it exists)
	$(GBPIPE) tune --config $(CONFIG) --n-trials $(TRIALS) --resume $(Q)

train: data ## K-fold OOF LightGBM on $(EXP) (with tuned params when tune ran); writes runs/$(EXP)/<run_id>/
	$(GBPIPE) train --config $(CONFIG) $(if $(wildcard $(PARAMS)),--params $(PARAMS)) $(Q)

importance: ## permutation (per fold, with CI), gain/split and null importance of the latest run of $(EXP)
	$(GBPIPE) importance --run $(RUN) $(Q)

drift: ## the latest run of $(EXP) against its test rows: PSI/KL/KS per feature, adversarial AUC, cutoffs
	$(GBPIPE) drift --run $(RUN) --replace $(Q)

select: data ## feature selection inside the folds (nested vs naive OOF) -> runs/$(EXP)/select/<id>/
	$(GBPIPE) select --config $(CONFIG) $(Q)

ensemble: data ## model families on the shared folds + voting, blending, stacking with honest intervals
	$(GBPIPE) ensemble --config $(CONFIG) $(Q)

auto: data ## the whole search within BUDGET (default 10m): default LightGBM, tuning, portfolio, combiners -> runs/$(EXP)/<run_id>-auto/
	$(GBPIPE) auto --config $(CONFIG) --time-budget $(BUDGET) $(Q)

report: ## report.html/.json/.md of the latest run of $(EXP); prints the headline numbers and the path
	$(GBPIPE) report --run $(RUN) $(Q)

runs: ## list the runs of $(EXP) with their headline numbers
	$(GBPIPE) runs --config $(CONFIG)

predict: ## predict $(INPUT) with the latest run of $(EXP) -> $(OUTPUT)
	$(GBPIPE) predict --run $(RUN) --input $(INPUT) --output $(OUTPUT) $(Q)

score: ## score every entity as of AT (default end: the day after the data's last event) with the latest run of $(EXP) -> predictions/$(EXP)_$(AT).csv
	$(GBPIPE) features --config $(CONFIG) --set features.cutoffs.test=$(AT) --test-rows runs/$(EXP)/score_input_$(AT).parquet $(Q)
	$(GBPIPE) predict --run $(RUN) --input runs/$(EXP)/score_input_$(AT).parquet --output predictions/$(EXP)_$(AT).csv $(Q)

run: data ## the main job: retail features, tuning, training, importance, selection, ensemble, drift, report, predictions
	$(MAKE) --no-print-directory features tune train EXP=$(EXP) Q=$(Q)
	$(MAKE) --no-print-directory after-train EXP=$(EXP) Q=$(Q)
	$(MAKE) --no-print-directory predict drift report EXP=$(EXP) Q=$(Q)

# Once train is done, importance then ensemble (they read its run) and select (it reads only the features) do not
# depend on each other. Where processes can be pinned (taskset, 2 cores or more) the two lanes run side by side,
# each on its half of this process's cores: gbpipe sizes every thread budget from its CPU affinity, so the two
# never run more LightGBM threads than there are cores, and each lane's single-threaded stretches (data loading,
# permutation bookkeeping, combiners) overlap the other's. Elsewhere the three run one after another.
after-train: ## (part of run) importance and ensemble beside select, each lane on half of the cores
	@set -- $$($(PY) -c 'import os; c = sorted(os.sched_getaffinity(0)); h = len(c) // 2; print(",".join(map(str, c[:h])), ",".join(map(str, c[h:])))'); \
	if [ $$# -eq 2 ] && command -v taskset >/dev/null 2>&1; then \
		taskset -c $$1 $(MAKE) --no-print-directory importance ensemble EXP=$(EXP) Q=$(Q) & lane=$$!; \
		taskset -c $$2 $(MAKE) --no-print-directory select EXP=$(EXP) Q=$(Q); selected=$$?; \
		wait $$lane && [ $$selected -eq 0 ]; \
	else \
		$(MAKE) --no-print-directory importance select ensemble EXP=$(EXP) Q=$(Q); \
	fi

bench: setup ## every benchmark in bench/ (each prints one JSON line last), one at a time under a lock; takes a while
	@for script in bench/bench_*.py; do echo "== $$script"; flock /tmp/gbpipe-bench.lock $(PY) $$script || exit 1; done

test: setup ## the test suite (what CI runs)
	$(PY) -m pytest -q

lint: setup ## static checks: ruff's rules, its formatting and the 120-character line
	$(PY) -m ruff check pipeline features tests bench
	$(PY) -m ruff format --check pipeline features tests bench

clean: ## remove runs and caches (keeps data/raw and the venv)
	rm -rf runs predictions .pytest_cache
