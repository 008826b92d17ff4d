# SPEC §3-§6, §11: MAE pre-training, mr estimation, Figs. 2, 3 (per game) and Fig. 8 (all games).

rule pretrain_mae:
    input:
        code=plan.PRETRAIN_MAE.code,
        **stage_job(plan.PRETRAIN_MAE).inputs,
    output:
        **stage_job(plan.PRETRAIN_MAE).outputs,
    log:
        stage_job(plan.PRETRAIN_MAE).log,
    params:
        cmd=stage_cmd(plan.PRETRAIN_MAE),
        sections=smk.section_values(PARAMS, plan.PRETRAIN_MAE),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule estimate_mr:
    input:
        code=plan.ESTIMATE_MR.code,
        **stage_job(plan.ESTIMATE_MR).inputs,
    output:
        **stage_job(plan.ESTIMATE_MR).outputs,
    log:
        stage_job(plan.ESTIMATE_MR).log,
    params:
        cmd=stage_cmd(plan.ESTIMATE_MR),
        sections=smk.section_values(PARAMS, plan.ESTIMATE_MR),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule saliency_figures:
    input:
        code=plan.SALIENCY_FIGURES.code,
        **stage_job(plan.SALIENCY_FIGURES).inputs,
    output:
        **stage_job(plan.SALIENCY_FIGURES).outputs,
    log:
        stage_job(plan.SALIENCY_FIGURES).log,
    params:
        cmd=stage_cmd(plan.SALIENCY_FIGURES),
        sections=smk.section_values(PARAMS, plan.SALIENCY_FIGURES),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule fig8:
    input:
        unpack(stage_inputs(plan.FIG8)),
        code=plan.FIG8.code,
    output:
        **stage_job(plan.FIG8).outputs,
    log:
        stage_job(plan.FIG8).log,
    params:
        cmd=stage_cmd(plan.FIG8),
        sections=smk.section_values(PARAMS, plan.FIG8),
    shell:
        "{params.cmd}"


# SPEC §13-§14: the other saliency criteria (Wu et al.'s mask, each scorer's mr*) and their object recall.

rule pretrain_wu:
    input:
        code=plan.PRETRAIN_WU.code,
        **stage_job(plan.PRETRAIN_WU).inputs,
    output:
        **stage_job(plan.PRETRAIN_WU).outputs,
    log:
        stage_job(plan.PRETRAIN_WU).log,
    params:
        cmd=stage_cmd(plan.PRETRAIN_WU),
        sections=smk.section_values(PARAMS, plan.PRETRAIN_WU),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule estimate_mr_scorer:
    input:
        unpack(stage_inputs(plan.ESTIMATE_MR_SCORER)),
        code=plan.ESTIMATE_MR_SCORER.code,
    output:
        **stage_job(plan.ESTIMATE_MR_SCORER).outputs,
    log:
        stage_job(plan.ESTIMATE_MR_SCORER).log,
    wildcard_constraints:
        scorer="|".join(s for s in plan.SCORERS if s != "mae_surround"),
    params:
        cmd=stage_cmd(plan.ESTIMATE_MR_SCORER),
        sections=smk.section_values(PARAMS, plan.ESTIMATE_MR_SCORER),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule objects:
    input:
        code=plan.OBJECTS.code,
    output:
        **stage_job(plan.OBJECTS).outputs,
    log:
        stage_job(plan.OBJECTS).log,
    params:
        cmd=stage_cmd(plan.OBJECTS),
        sections=smk.section_values(PARAMS, plan.OBJECTS),
    threads: 1
    shell:
        "{params.cmd}"


rule saliency_quality:
    input:
        unpack(stage_inputs(plan.SALIENCY_QUALITY)),
        code=plan.SALIENCY_QUALITY.code,
    output:
        **stage_job(plan.SALIENCY_QUALITY).outputs,
    log:
        stage_job(plan.SALIENCY_QUALITY).log,
    params:
        cmd=stage_cmd(plan.SALIENCY_QUALITY),
        sections=smk.section_values(PARAMS, plan.SALIENCY_QUALITY),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule quality_table:
    input:
        unpack(stage_inputs(plan.QUALITY_TABLE)),
        code=plan.QUALITY_TABLE.code,
    output:
        **stage_job(plan.QUALITY_TABLE).outputs,
    log:
        stage_job(plan.QUALITY_TABLE).log,
    params:
        cmd=stage_cmd(plan.QUALITY_TABLE),
        sections=smk.section_values(PARAMS, plan.QUALITY_TABLE),
    shell:
        "{params.cmd}"
