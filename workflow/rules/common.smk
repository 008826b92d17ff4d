# Shared by every rule: wildcard constraints, and the helpers that give each rule its job, inputs, command and
# resources, all taken from src/spirl/workflow/plan.py (the plan DVC's files are generated from).

GAMES = tuple(plan.needed_games(PARAMS))
GPU = smk.gpu_tokens(PARAMS)  # a job that runs torch takes one GPU token when the device is a GPU

wildcard_constraints:
    game="|".join(PARAMS.experiment.games),
    variant="|".join(PARAMS.experiment.variants),
    regime="|".join(PARAMS.train.regimes),
    seed=r"\d+",
    table="|".join(PARAMS.experiment.tables),
    scorer="|".join(plan.OTHER_SCORERS),  # estimate_mr_scorer's: the paper's criterion has estimate_mr


def stage_job(stage, seeds=()):
    """The stage's job with Snakemake wildcards ({game}) left in its paths; a group of seeds (a TRAIN job of
    runtime.seeds_per_job > 1 seeds) names each seed's files and its log after the group's label, e.g. 0-4."""
    wildcards = {w: "{" + w + "}" for w in stage.wildcards}
    if seeds:
        wildcards["seed"] = plan.seed_group_label(seeds)
    return plan.Job(stage, PROFILE, wildcards, GAMES, seeds=seeds)


def concrete_job(stage, wildcards, seeds=()):
    """The job of a rule's wildcards (a seed group's rule has no {seed}: the group's label fills it)."""
    wc = dict(wildcards)
    if seeds:
        wc["seed"] = plan.seed_group_label(seeds)
    return plan.job_for(PARAMS, stage, wc)


def rule_resources(name, stage):
    """A torch stage's job takes a GPU token. A rule not named after its stage (a seed group's, e.g. train_seeds_0_4)
    also takes what the workflow profile's set-resources give the stage (profiles/slurm: `train`'s partition, GPU,
    wall time, memory), which Snakemake applies by rule name."""
    resources = {"gpu": GPU} if stage.torch else {}
    if name != stage.name:
        settings = getattr(workflow, "resource_settings", None)
        inherited = getattr(settings, "overwrite_resources", {}).get(stage.name, {})  # Snakemake Resource objects
        resources.update({key: getattr(value, "raw", value) for key, value in inherited.items()})
    return resources
