# SPIRL reproduction: the few commands a user needs (see README.md).
#   make setup   create .venv with a CPU build of torch and the project (editable) + dev tools
#   make smoke   the whole DAG on the smoke profile (CPU, minutes)
#   make test    the test suite (what .ci/run runs)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= smoke
JOBS ?= 2
TORCH_VERSION ?= 2.13.0
# Jobs call plain `python`, `snakemake` and `dvc`: put the venv first on PATH for every recipe.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONHASHSEED := 0

SMK_PROFILE_ARGS := $(if $(filter full,$(PROFILE)),,--configfile conf/$(PROFILE).yaml)
DVC_FILE := $(if $(filter full,$(PROFILE)),dvc.yaml,pipelines/$(PROFILE)/dvc.yaml)

.PHONY: setup smoke test lint dvc-yaml sync-dvc sync-smk dvc-smoke bench-env clean-smoke tables-now

setup: $(VENV)/.installed

# torch first, pinned, from the CPU build; a GPU workstation can pre-install its CUDA build instead.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

smoke: setup
	snakemake -j$(JOBS) --configfile conf/smoke.yaml

test: setup
	ruff check src tests bench
	$(PY) -m pytest -q

lint: setup
	ruff check src tests bench

# Regenerate dvc.yaml and pipelines/<profile>/dvc.yaml from the plan in src/spirl/pipeline.py.
dvc-yaml: setup
	$(PY) src/sync_dvc_yaml.py

# The same DAG through DVC, for the active PROFILE.
dvc-smoke: setup
	dvc repro pipelines/smoke/dvc.yaml

# DESIGN §4: after a Snakemake run, record its outputs in dvc.lock; after dvc repro/pull/checkout,
# mark Snakemake's view up to date, then publish the profile's tables at results/tableN.* (only the paper
# profile's dvc.yaml owns those paths, so after `dvc repro` of another profile they are copied here).
sync-dvc: setup
	dvc commit -f $(DVC_FILE)

sync-smk: setup
	snakemake -j1 --touch $(SMK_PROFILE_ARGS)
	snakemake -j1 $(SMK_PROFILE_ARGS)

# The profile's tables (and their published copies) from whatever runs exist now, outside the DAG: cells whose
# runs are missing or incomplete say so. The DAG itself builds a table only once all its runs exist.
tables-now: setup
	$(PY) -c "import subprocess; from spirl.config import load_params; from spirl.pipeline import jobs, param_files; \
	[subprocess.run(j.cmd, shell=True, check=True) for j in jobs(load_params(param_files('$(PROFILE)'))) \
	 if j.stage.name in ('table', 'publish')]"

bench-env: setup
	$(PY) bench/env.py --out bench/results/env.json

clean-smoke:
	rm -rf data/smoke results/smoke work/smoke
