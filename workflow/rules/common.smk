# Shared by every rule: wildcard constraints and the paths/commands of each stage, all taken from
# src/spirl/workflow/plan.py (the plan DVC's files are generated from).

GAMES = tuple(plan.needed_games(PARAMS))
GPU = smk.gpu_tokens(PARAMS)  # jobs that run torch take one GPU token when the device is a GPU

wildcard_constraints:
    game="|".join(PARAMS.experiment.games),


def stage_job(stage):
    """The stage's job with Snakemake wildcards ({game}) left in its paths."""
    return plan.Job(stage, PROFILE, {w: "{" + w + "}" for w in stage.wildcards}, GAMES)


def stage_cmd(stage):
    """Snakemake params function: the job's exact command (identical to DVC's cmd)."""
    return lambda wildcards: plan.job_for(PARAMS, stage, wildcards).cmd


def stage_inputs(stage):
    """Snakemake input function: the job's inputs by name (runs, tables or games it gathers included)."""
    return lambda wildcards: plan.job_for(PARAMS, stage, wildcards).inputs

wildcard_constraints:
    variant="|".join(PARAMS.experiment.variants),
    regime="|".join(PARAMS.train.regimes),
    seed=r"\d+",
    table="|".join(PARAMS.experiment.tables),
