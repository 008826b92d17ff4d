# SPEC §7-§10: one training + evaluation job per (variant, regime, game, seed) that a table needs.


def train_job(wildcards):
    """The run's job: its inputs depend on the variant (MAE and mr for spirl, frames for a pre-fill)."""
    wc = dict(wildcards)
    names = pipeline.train_input_names(PARAMS, wc["variant"])
    return pipeline.Job(pipeline.TRAIN, PROFILE, wc, GAMES, names)


rule train:
    input:
        unpack(lambda wc: train_job(wc).inputs),
        code=pipeline.TRAIN.code,
    output:
        **stage_job(pipeline.TRAIN).outputs,
    log:
        stage_job(pipeline.TRAIN).log,
    params:
        cmd=lambda wc: train_job(wc).cmd,
        sections=lambda wc: pipeline.section_values(PARAMS, pipeline.TRAIN, dict(wc)),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"
