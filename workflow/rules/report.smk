rule synthesis_tables:
    input:
        evaluations=synthesis_evaluations(),
        models=expand(f"{R}/models/{{run}}/model", run=RUNS),
    output:
        table3=f"{R}/tables/table3.csv",
        table3_md=f"{R}/tables/table3.md",
        table4=f"{R}/tables/table4.csv",
        table4_md=f"{R}/tables/table4.md",
        figure=f"{R}/figures/figure5_synthesis.png",
        training=f"{R}/tables/training.csv",
    log:
        f"{R}/logs/report/synthesis_tables.log",
    conda:
        "../../envs/meddiff.yaml"
    params:
        config=RESOLVED,
        results=lambda w, output: results_folder(output),
    shell:
        "meddiff --threads {threads} report-synthesis {params.results} --config {params.config} > {log} 2>&1"


rule denoising_table:
    input:
        evaluation=rules.denoise.output.evaluation,
    output:
        table=f"{R}/tables/table5.csv",
        table_md=f"{R}/tables/table5.md",
        figure=f"{R}/figures/figure6_denoising.png",
    log:
        f"{R}/logs/report/denoising_table.log",
    conda:
        "../../envs/meddiff.yaml"
    params:
        config=RESOLVED,
        results=lambda w, output: results_folder(output),
    shell:
        "meddiff --threads {threads} report-denoising {input.evaluation} {params.results} --config {params.config} > {log} 2>&1"


rule anomaly_table:
    input:
        metrics=rules.anomaly.output.metrics,
        examples=rules.anomaly.output.examples,
    output:
        table=f"{R}/tables/table6.csv",
        table_md=f"{R}/tables/table6.md",
        figure=f"{R}/figures/figure7_anomaly.png",
    log:
        f"{R}/logs/report/anomaly_table.log",
    conda:
        "../../envs/meddiff.yaml"
    params:
        config=RESOLVED,
        results=lambda w, output: results_folder(output),
    shell:
        "meddiff --threads {threads} report-anomaly {input.metrics} {input.examples} {params.results} --config {params.config} > {log} 2>&1"
