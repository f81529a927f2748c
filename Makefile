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

.PHONY: setup export check-export test test-nbs test-py smoke repro lab clean-venv

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

test-nbs: setup
	$(BIN)/nbdev_test --n_workers 2 $(NBDEV_SKIP)

test-py: setup
	$(BIN)/python -m pytest -q tests

test: check-export test-nbs test-py

repro: setup
	$(BIN)/dvc repro
	$(BIN)/python -c "from mla_cmg.core import render_readme; render_readme()"

# The whole DAG on the smoke profile (params.yaml: profiles.smoke) in a temporary copy.
smoke: setup
	$(BIN)/python scripts/smoke.py

lab: setup
	$(BIN)/jupyter lab nbs

clean-venv:
	rm -rf $(VENV)
