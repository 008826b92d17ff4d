# SPEC §11, issue "tables and figures": scores, the paper's tables beside its numbers, figures, Fig. 6, the report.


rule aggregate:
    input:
        unpack(stage_inputs(pipeline.AGGREGATE)),
        code=pipeline.AGGREGATE.code,
    output:
        **stage_job(pipeline.AGGREGATE).outputs,
    log:
        stage_job(pipeline.AGGREGATE).log,
    params:
        cmd=stage_cmd(pipeline.AGGREGATE),
        sections=pipeline.section_values(PARAMS, pipeline.AGGREGATE),
    shell:
        "{params.cmd}"


rule table:
    input:
        unpack(stage_inputs(pipeline.TABLE)),
        code=pipeline.TABLE.code,
    output:
        **stage_job(pipeline.TABLE).outputs,
    log:
        stage_job(pipeline.TABLE).log,
    params:
        cmd=stage_cmd(pipeline.TABLE),
        sections=pipeline.section_values(PARAMS, pipeline.TABLE),
    shell:
        "{params.cmd}"


rule publish:
    input:
        unpack(stage_inputs(pipeline.PUBLISH)),
        code=pipeline.PUBLISH.code,
    output:
        **stage_job(pipeline.PUBLISH).outputs,
    log:
        stage_job(pipeline.PUBLISH).log,
    params:
        cmd=stage_cmd(pipeline.PUBLISH),
        sections=pipeline.section_values(PARAMS, pipeline.PUBLISH),
    shell:
        "{params.cmd}"


rule figures:
    input:
        unpack(stage_inputs(pipeline.FIGURES)),
        code=pipeline.FIGURES.code,
    output:
        **stage_job(pipeline.FIGURES).outputs,
    log:
        stage_job(pipeline.FIGURES).log,
    params:
        cmd=stage_cmd(pipeline.FIGURES),
        sections=pipeline.section_values(PARAMS, pipeline.FIGURES),
    shell:
        "{params.cmd}"


rule fig6:
    input:
        unpack(stage_inputs(pipeline.FIG6)),
        code=pipeline.FIG6.code,
    output:
        **stage_job(pipeline.FIG6).outputs,
    log:
        stage_job(pipeline.FIG6).log,
    params:
        cmd=stage_cmd(pipeline.FIG6),
        sections=pipeline.section_values(PARAMS, pipeline.FIG6),
    threads: PARAMS.runtime.torch_threads
    resources:
        gpu=GPU,
    shell:
        "{params.cmd}"


rule report:
    input:
        unpack(stage_inputs(pipeline.REPORT)),
        code=pipeline.REPORT.code,
    output:
        **stage_job(pipeline.REPORT).outputs,
    log:
        stage_job(pipeline.REPORT).log,
    params:
        cmd=stage_cmd(pipeline.REPORT),
        sections=pipeline.section_values(PARAMS, pipeline.REPORT),
    shell:
        "{params.cmd}"
