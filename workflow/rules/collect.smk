# SPEC §2: random-policy frames for MAE pre-training, one job per game.

rule collect:
    input:
        code=plan.COLLECT.code,
    output:
        **stage_job(plan.COLLECT).outputs,
    log:
        stage_job(plan.COLLECT).log,
    params:
        cmd=stage_cmd(plan.COLLECT),
        sections=smk.section_values(PARAMS, plan.COLLECT),
    threads: 1
    shell:
        "{params.cmd}"
