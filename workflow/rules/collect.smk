# SPEC §2: random-policy frames for MAE pre-training, one job per game.

rule collect:
    input:
        code=pipeline.COLLECT.code,
    output:
        **pipeline.Job(pipeline.COLLECT, PROFILE, {"game": "{game}"}).outputs,
    log:
        pipeline.Job(pipeline.COLLECT, PROFILE, {"game": "{game}"}).log,
    params:
        cmd=lambda wc: pipeline.command(pipeline.COLLECT, PROFILE, {"game": wc.game}),
        sections=pipeline.section_values(PARAMS, pipeline.COLLECT),
    threads: 1
    shell:
        "{params.cmd}"
