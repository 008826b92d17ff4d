# SPIRL reproduction pipeline: the entry point.
#   snakemake -j4 results/table2.csv                      # the paper profile (params.yaml as committed)
#   snakemake -j2 --configfile conf/smoke.yaml            # the smoke profile (minutes on a CPU)
# Every job's command, outputs and code dependencies come from src/spirl/workflow/plan.py, which also
# generates the DVC mirror (dvc.yaml, pipelines/<profile>/dvc.yaml): see README "Design notes". The rules are one
# per stage of src/spirl/workflow/stages.py, made in one loop (workflow/rules/stages.smk).

import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from spirl.workflow import plan  # noqa: E402
from spirl.workflow import snakemake as smk  # noqa: E402

configfile: "params.yaml"

# Strict validation before any job runs: the parameter model (types, ranges), cross-references, and
# "Snakemake's config == params.yaml + conf/<profile>.yaml" (the files the jobs read).
PARAMS = smk.check_snakemake_config(config, Path(workflow.basedir))
PROFILE = PARAMS.experiment.profile


include: "workflow/rules/common.smk"
include: "workflow/rules/stages.smk"


rule all:
    input:
        plan.targets(PARAMS),
    default_target: True
