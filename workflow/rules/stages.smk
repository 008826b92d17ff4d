# One rule per stage of src/spirl/workflow/stages.py (SPEC §2-§14: frames, the MAE and mr, the other scorers and
# their object recall, the training runs, scores, tables, figures and the report), named after the stage; the
# stage says what its rule needs (its jobs' paths, commands and code, torch: threads and a GPU token).
#
# Training: one job per (variant, regime, game, seed), or with runtime.seeds_per_job = S > 1 one per S consecutive
# seeds of a (variant, regime, game), trained in one process. Then there is one rule per seed group (e.g. seeds
# 0-4), its outputs every seed's files, with {variant} constrained to the variants trained in that group, so that
# exactly one rule makes each run's files; a workflow profile's set-resources for `train` apply to every group rule
# (rule_resources, workflow/rules/common.smk).

GROUPED = PARAMS.runtime.seeds_per_job > 1
RULES = [(stage.name, stage, (), {}) for stage in plan.STAGES.values() if not (stage is plan.TRAIN and GROUPED)]
RULES += [(f"train_seeds_{plan.seed_group_label(seeds).replace('-', '_')}", plan.TRAIN, seeds,
           {"variant": "|".join(variants)}) for seeds, variants in plan.seed_groups(PARAMS).items()]

for _name, _stage, _seeds, _constraints in RULES:

    rule:
        name:
            _name
        input:
            unpack(lambda wc, stage=_stage, seeds=_seeds: concrete_job(stage, wc, seeds).inputs),
            code=_stage.code,
        output:
            **stage_job(_stage, _seeds).outputs,
        log:
            stage_job(_stage, _seeds).log,
        wildcard_constraints:
            **_constraints,
        params:
            cmd=lambda wc, stage=_stage, seeds=_seeds: concrete_job(stage, wc, seeds).cmd,
            sections=lambda wc, stage=_stage: smk.section_values(PARAMS, stage, dict(wc)),
        threads: PARAMS.runtime.torch_threads if _stage.torch else 1
        resources:
            **rule_resources(_name, _stage),
        shell:
            "{params.cmd}"
