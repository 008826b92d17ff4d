# SPEC §11, issue "tables and figures": scores, the paper's tables beside its numbers, figures, Fig. 6, the report.


rule aggregate:
    input:
        unpack(stage_inputs(plan.AGGREGATE)),
        code=plan.AGGREGATE.code,
    output:
        **stage_job(plan.AGGREGATE).outputs,
    log:
        stage_job(plan.AGGREGATE).log,
    params:
        cmd=stage_cmd(plan.AGGREGATE),
        sections=smk.section_values(PARAMS, plan.AGGREGATE),
    shell:
        "{params.cmd}"


rule table:
    input:
        unpack(stage_inputs(plan.TABLE)),
        code=plan.TABLE.code,
    output:
        **stage_job(plan.TABLE).outputs,
    log:
        stage_job(plan.TABLE).log,
    params:
        cmd=stage_cmd(plan.TABLE),
        sections=smk.section_values(PARAMS, plan.TABLE),
    shell:
        "{params.cmd}"


rule publish:
    input:
        unpack(stage_inputs(plan.PUBLISH)),
        code=plan.PUBLISH.code,
    output:
        **stage_job(plan.PUBLISH).outputs,
    log:
        stage_job(plan.PUBLISH).log,
    params:
        cmd=stage_cmd(plan.PUBLISH),
        sections=smk.section_values(PARAMS, plan.PUBLISH),
    shell:
        "{params.cmd}"


rule figures:
    input:
        unpack(stage_inputs(plan.FIGURES)),
        code=plan.FIGURES.code,
    output:
        **stage_job(plan.FIGURES).outputs,
    log:
        stage_job(plan.FIGURES).log,
    params:
        cmd=stage_cmd(plan.FIGURES),
        sections=smk.section_values(PARAMS, plan.FIGURES),
    shell:
        "{params.cmd}"


rule fig6:
    input:
        unpack(stage_inputs(plan.FIG6)),
        code=plan.FIG6.code,
    output:
        **stage_job(plan.FIG6).outputs,
    log:
        stage_job(plan.FIG6).log,
    params:
        cmd=stage_cmd(plan.FIG6),
        sections=smk.section_values(PARAMS, plan.FIG6),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule report:
    input:
        unpack(stage_inputs(plan.REPORT)),
        code=plan.REPORT.code,
    output:
        **stage_job(plan.REPORT).outputs,
    log:
        stage_job(plan.REPORT).log,
    params:
        cmd=stage_cmd(plan.REPORT),
        sections=smk.section_values(PARAMS, plan.REPORT),
    shell:
        "{params.cmd}"
