# SPEC §7-§10: the training + evaluation jobs that the tables need: one per (variant, regime, game, seed), or with
# runtime.seeds_per_job = S > 1 one per S consecutive seeds of a (variant, regime, game), trained in one process.


def train_job(wildcards, seeds=None):
    """The job: its inputs depend on the variant (MAE and mr for spirl, frames for a pre-fill)."""
    wc = dict(wildcards)
    if seeds is not None:
        wc["seed"] = plan.seed_group_label(seeds)
    return plan.train_job(PARAMS, wc)


if PARAMS.runtime.seeds_per_job == 1:

    rule train:
        input:
            unpack(lambda wc: train_job(wc).inputs),
            code=plan.TRAIN.code,
        output:
            **stage_job(plan.TRAIN).outputs,
        log:
            stage_job(plan.TRAIN).log,
        params:
            cmd=lambda wc: train_job(wc).cmd,
            sections=lambda wc: smk.section_values(PARAMS, plan.TRAIN, dict(wc)),
        threads: PARAMS.runtime.torch_threads
        resources:
            gpu=GPU,
        shell:
            "{params.cmd}"

else:
    # One rule per seed group (e.g. seeds 0-4), its outputs every seed's files; {variant} is constrained to
    # the variants trained in that group, so exactly one rule makes each run's files. A workflow profile's
    # set-resources for `train` (profiles/slurm: partition, GPU, wall time, memory) apply to every group rule.
    _settings = getattr(workflow, "resource_settings", None)
    _train_set = getattr(_settings, "overwrite_resources", {}).get("train", {})  # Snakemake Resource objects
    _train_resources = {"gpu": GPU, **{name: getattr(value, "raw", value) for name, value in _train_set.items()}}
    for _seeds, _variants in plan.seed_groups(PARAMS).items():
        _template = {w: "{" + w + "}" for w in ("variant", "regime", "game")}
        _group = plan.Job(plan.TRAIN, PROFILE, {**_template, "seed": plan.seed_group_label(_seeds)},
                              seeds=_seeds)

        rule:
            name:
                f"train_seeds_{plan.seed_group_label(_seeds).replace('-', '_')}"
            input:
                unpack(lambda wc, seeds=_seeds: train_job(wc, seeds).inputs),
                code=plan.TRAIN.code,
            output:
                **_group.outputs,
            log:
                _group.log,
            wildcard_constraints:
                variant="|".join(_variants),
            params:
                cmd=lambda wc, seeds=_seeds: train_job(wc, seeds).cmd,
                sections=lambda wc: smk.section_values(PARAMS, plan.TRAIN, dict(wc)),
            threads: PARAMS.runtime.torch_threads
            resources:
                **_train_resources,
            shell:
                "{params.cmd}"
