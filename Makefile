# SPIRL reproduction: the few commands a user needs (see README.md).
#   make setup   create .venv with a CPU build of torch and the project (editable) + dev tools, and .venv-objects
#   make smoke   the whole DAG on the smoke profile (CPU, minutes)
#   make test    the test suite (what .ci/run runs)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
GAME ?= Frostbite
PROFILE ?= smoke
JOBS ?= 2
# Test workers (pytest-xdist): one per core; whole files go to one worker, so a module's fixtures are built once;
# in collection order, which tests/conftest.py starts with the longest files (xdist would start with the most tests).
TEST_WORKERS ?= auto
TORCH_VERSION ?= 2.13.0
# The object-recall stage's own environment (SPEC §14): OCAtari pins numpy<2 and pulls GUI packages.
OBJECTS_VENV ?= .venv-objects
OCATARI_VERSION ?= 2.2.1
OBJECTS_ALE_PY_VERSION ?= 0.12.1
OBJECTS_OPENCV_VERSION ?= 4.11.0.86
OBJECTS_PY := $(OBJECTS_VENV)/bin/python
OBJECTS_STAMP := $(OBJECTS_VENV)/.installed-ocatari$(OCATARI_VERSION)-ale$(OBJECTS_ALE_PY_VERSION)-cv$(OBJECTS_OPENCV_VERSION)-pydantic
# Jobs call plain `python`, `snakemake` and `dvc`: put the venv first on PATH for every recipe.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONHASHSEED := 0

SMK_PROFILE_ARGS := $(if $(filter full,$(PROFILE)),,--configfile conf/$(PROFILE).yaml)
DVC_FILE := $(if $(filter full,$(PROFILE)),dvc.yaml,pipelines/$(PROFILE)/dvc.yaml)

.PHONY: setup objects-env smoke test lint dvc-yaml sync-dvc sync-smk dvc-repro dvc-smoke bench-env clean-smoke \
	tables-now report-now desk desk-evidence desk-models desk-restore rehearsal slurm-up slurm-status slurm-down dvc-remote

setup: $(VENV)/.installed objects-env

# torch first, pinned, from the CPU build; a GPU workstation can pre-install its CUDA build instead.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# src/collect_objects.py alone runs in $(OBJECTS_VENV) (PYTHONHASHSEED=0 .venv-objects/bin/python src/collect_objects.py
# ...); the main .venv never sees OCAtari. Only the packages that script imports: OCAtari (RAM mode) with its
# dependencies, ale-py, PyYAML, pydantic, tqdm; OpenCV as the headless build of the same version (OCAtari asks for
# opencv-python, whose cv2 needs the system's libGL, absent on a bare machine; `pip check` names that swap); and a
# .pth to src/ so that `import spirl` works without installing the project (no torch there). The stamp names the
# pins: changing one rebuilds on the next `make setup`; deleting the stamp forces a rebuild.
objects-env: $(OBJECTS_STAMP)

$(OBJECTS_STAMP):
	test -x $(OBJECTS_PY) || python3 -m venv $(OBJECTS_VENV)
	printf '*\n' > $(OBJECTS_VENV)/.gitignore
	$(OBJECTS_PY) -m pip install --quiet --upgrade pip
	$(OBJECTS_PY) -m pip install --quiet "ocatari==$(OCATARI_VERSION)" "ale-py==$(OBJECTS_ALE_PY_VERSION)" pyyaml \
		"pydantic>=2.7" tqdm
	$(OBJECTS_PY) -m pip uninstall --quiet --yes opencv-python
	$(OBJECTS_PY) -m pip install --quiet --no-deps --force-reinstall "opencv-python-headless==$(OBJECTS_OPENCV_VERSION)"
	$(OBJECTS_PY) -c "import pathlib, sysconfig; \
		pathlib.Path(sysconfig.get_paths()['purelib'], 'spirl_src.pth').write_text('$(abspath src)\n')"
	cd $(OBJECTS_VENV) && PYGAME_HIDE_SUPPORT_PROMPT=1 ./bin/python -c "import cv2, ocatari.ram, spirl.envs.atari, spirl.envs.objects, spirl.envs.object_files; \
		import numpy; assert numpy.__version__ < '2', numpy.__version__"
	rm -f $(OBJECTS_VENV)/.installed-*
	touch $@

smoke: setup
	snakemake -j$(JOBS) --configfile conf/smoke.yaml

# The desk profile (conf/desk.yaml): the paper's settings on the slice two CPU cores finish in a few hours (resumable:
# run it again after an interruption), then its tables and run records copied next to its report (committed).
desk: setup
	snakemake -j$(JOBS) --configfile conf/desk.yaml
	$(MAKE) desk-evidence

# reports/desk/ is committed evidence: the report and figures (DAG outputs) plus copies of the tables, the per-run
# eval.json/progress.csv/run.json, the mr estimates, the saliency-quality results and the MAE's and Wu mask's loss
# and run records (never frames, models or weights). The script needs only the standard library: no `setup` first.
desk-evidence:
	python3 workflow/scripts/desk_evidence.py save

# The desk's small trained models of one game (the MAE, the Wu mask, or the Wu mask's resume checkpoint while it
# trains) to reports/desk/models/, so a later sitting restores them (`make desk-restore`) instead of training again.
desk-models:
	python3 workflow/scripts/desk_evidence.py save-models --game $(GAME)

# The way back: put the committed records where the pipeline reads them, never over a file that exists, so that
# `make desk-restore report-now PROFILE=desk` on a fresh clone (or after the work folders were lost) rebuilds the
# tables and the report from them. Records only: a run restored without its weights is still re-run by `make desk`.
desk-restore:
	python3 workflow/scripts/desk_evidence.py restore

# Every stage and variant of the paper profile at its paper shape on a slice of its work (conf/rehearsal.yaml):
# per-part times, peak memory and full-run hours on this machine -> bench/results/rehearsal-<device>.json. Not in CI.
rehearsal: setup
	$(PY) bench/rehearsal.py

test: setup
	ruff check src tests bench
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

lint: setup
	ruff check src tests bench

# Regenerate dvc.yaml and pipelines/<profile>/dvc.yaml from the plan in src/spirl/workflow/plan.py.
dvc-yaml: setup
	$(PY) src/sync_dvc_yaml.py

# The same DAG through DVC, for the active PROFILE (dvc.yaml for the paper profile, PROFILE=full); dvc-smoke is its
# older name (PROFILE defaults to smoke).
dvc-repro: setup
	dvc repro $(DVC_FILE)

dvc-smoke: dvc-repro

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
	$(PY) workflow/scripts/run_stages.py --profile $(PROFILE) --stages table publish

# The same for the whole report: scores, tables, the aggregate figures and the report from what exists now (a
# figure or record not made yet is named as missing in the report).
report-now: setup
	$(PY) workflow/scripts/run_stages.py --profile $(PROFILE) --stages aggregate table publish figures report

bench-env: setup
	$(PY) bench/env.py --out bench/results/env.json

clean-smoke:
	rm -rf data/smoke results/smoke work/smoke

# A one-node SLURM cluster on this machine (root; Debian's packages via apt-get) to run profiles/slurm for real, its
# GPU jobs on a fake gres gpu:$(SLURM_FAKE_GPUS) (runtime.device auto -> CPU there), the node's memory taken as 64 GB
# (the profile asks 32 GB per torch job). README "A SLURM cluster on one machine" walks through a run:
#   make slurm-up; eval "$$(workflow/scripts/slurm_cluster.sh env)"
#   snakemake --workflow-profile profiles/slurm --slurm-status-command squeue ...; make slurm-down
# SLURM_ACCOUNTING=slurmdbd also runs slurmdbd + MariaDB (plain sacct with requested resources; no squeue flag needed).
# tests/integration/test_slurm.py starts a cluster of its own (own state folder and ports) and stops it.
SLURM_ACCOUNTING ?= jobcomp
SLURM_FAKE_GPUS ?= 1
slurm-up:
	SLURM_ACCOUNTING=$(SLURM_ACCOUNTING) SLURM_FAKE_GPUS=$(SLURM_FAKE_GPUS) SLURM_NODE_MEM_MB=65536 \
		bash workflow/scripts/slurm_cluster.sh start

# the daemons, sinfo and squeue
slurm-status:
	bash workflow/scripts/slurm_cluster.sh status

slurm-down:
	bash workflow/scripts/slurm_cluster.sh stop

# DVC's default remote, where `dvc push` sends and `dvc pull` fetches every cached artefact (frames, models, runs,
# tables): a shared directory (/mnt/shared/spirl-dvc), SSH (ssh://host/path; pip install dvc-ssh) or S3
# (s3://bucket/path; pip install dvc-s3). It is written to .dvc/config: commit it to share it.
dvc-remote: setup
	@test -n "$(REMOTE)" || { echo "usage: make dvc-remote REMOTE=<directory | ssh://host/path | s3://bucket/path>" >&2; exit 2; }
	dvc remote add --default --force shared "$(REMOTE)"
	dvc remote list
