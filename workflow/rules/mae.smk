# SPEC §3-§6, §11: MAE pre-training, mr estimation, Figs. 2, 3 (per game) and Fig. 8 (all games).

rule pretrain_mae:
    input:
        code=pipeline.PRETRAIN_MAE.code,
        **stage_job(pipeline.PRETRAIN_MAE).inputs,
    output:
        **stage_job(pipeline.PRETRAIN_MAE).outputs,
    log:
        stage_job(pipeline.PRETRAIN_MAE).log,
    params:
        cmd=stage_cmd(pipeline.PRETRAIN_MAE),
        sections=pipeline.section_values(PARAMS, pipeline.PRETRAIN_MAE),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule estimate_mr:
    input:
        code=pipeline.ESTIMATE_MR.code,
        **stage_job(pipeline.ESTIMATE_MR).inputs,
    output:
        **stage_job(pipeline.ESTIMATE_MR).outputs,
    log:
        stage_job(pipeline.ESTIMATE_MR).log,
    params:
        cmd=stage_cmd(pipeline.ESTIMATE_MR),
        sections=pipeline.section_values(PARAMS, pipeline.ESTIMATE_MR),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule saliency_figures:
    input:
        code=pipeline.SALIENCY_FIGURES.code,
        **stage_job(pipeline.SALIENCY_FIGURES).inputs,
    output:
        **stage_job(pipeline.SALIENCY_FIGURES).outputs,
    log:
        stage_job(pipeline.SALIENCY_FIGURES).log,
    params:
        cmd=stage_cmd(pipeline.SALIENCY_FIGURES),
        sections=pipeline.section_values(PARAMS, pipeline.SALIENCY_FIGURES),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule fig8:
    input:
        unpack(stage_inputs(pipeline.FIG8)),
        code=pipeline.FIG8.code,
    output:
        **stage_job(pipeline.FIG8).outputs,
    log:
        stage_job(pipeline.FIG8).log,
    params:
        cmd=stage_cmd(pipeline.FIG8),
        sections=pipeline.section_values(PARAMS, pipeline.FIG8),
    shell:
        "{params.cmd}"
