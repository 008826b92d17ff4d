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


# SPEC §13-§14: the other saliency criteria (Wu et al.'s mask, each scorer's mr*) and their object recall.

rule pretrain_wu:
    input:
        code=pipeline.PRETRAIN_WU.code,
        **stage_job(pipeline.PRETRAIN_WU).inputs,
    output:
        **stage_job(pipeline.PRETRAIN_WU).outputs,
    log:
        stage_job(pipeline.PRETRAIN_WU).log,
    params:
        cmd=stage_cmd(pipeline.PRETRAIN_WU),
        sections=pipeline.section_values(PARAMS, pipeline.PRETRAIN_WU),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule estimate_mr_scorer:
    input:
        unpack(stage_inputs(pipeline.ESTIMATE_MR_SCORER)),
        code=pipeline.ESTIMATE_MR_SCORER.code,
    output:
        **stage_job(pipeline.ESTIMATE_MR_SCORER).outputs,
    log:
        stage_job(pipeline.ESTIMATE_MR_SCORER).log,
    wildcard_constraints:
        scorer="|".join(s for s in pipeline.SCORERS if s != "mae_surround"),
    params:
        cmd=stage_cmd(pipeline.ESTIMATE_MR_SCORER),
        sections=pipeline.section_values(PARAMS, pipeline.ESTIMATE_MR_SCORER),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule objects:
    input:
        code=pipeline.OBJECTS.code,
    output:
        **stage_job(pipeline.OBJECTS).outputs,
    log:
        stage_job(pipeline.OBJECTS).log,
    params:
        cmd=stage_cmd(pipeline.OBJECTS),
        sections=pipeline.section_values(PARAMS, pipeline.OBJECTS),
    threads: 1
    shell:
        "{params.cmd}"


rule saliency_quality:
    input:
        unpack(stage_inputs(pipeline.SALIENCY_QUALITY)),
        code=pipeline.SALIENCY_QUALITY.code,
    output:
        **stage_job(pipeline.SALIENCY_QUALITY).outputs,
    log:
        stage_job(pipeline.SALIENCY_QUALITY).log,
    params:
        cmd=stage_cmd(pipeline.SALIENCY_QUALITY),
        sections=pipeline.section_values(PARAMS, pipeline.SALIENCY_QUALITY),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule quality_table:
    input:
        unpack(stage_inputs(pipeline.QUALITY_TABLE)),
        code=pipeline.QUALITY_TABLE.code,
    output:
        **stage_job(pipeline.QUALITY_TABLE).outputs,
    log:
        stage_job(pipeline.QUALITY_TABLE).log,
    params:
        cmd=stage_cmd(pipeline.QUALITY_TABLE),
        sections=pipeline.section_values(PARAMS, pipeline.QUALITY_TABLE),
    shell:
        "{params.cmd}"
