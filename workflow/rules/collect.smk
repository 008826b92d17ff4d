# SPEC §2: random-policy frames for MAE pre-training, one job per game.

rule collect:
    input:
        code=pipeline.COLLECT.code,
    output:
        **stage_job(pipeline.COLLECT).outputs,
    log:
        stage_job(pipeline.COLLECT).log,
    params:
        cmd=stage_cmd(pipeline.COLLECT),
        sections=pipeline.section_values(PARAMS, pipeline.COLLECT),
    threads: 1
    shell:
        "{params.cmd}"
