rule synthesis_tables:
    input:
        evaluations=synthesis_evaluations(),
        losses=expand(f"{R}/models/{{variant}}/model", variant=[v.name for v in CFG.variants]),
    output:
        table3=f"{R}/tables/table3.csv",
        table3_md=f"{R}/tables/table3.md",
        table4=f"{R}/tables/table4.csv",
        table4_md=f"{R}/tables/table4.md",
        figure=f"{R}/figures/figure5_synthesis.png",
        training=f"{R}/tables/training.csv",
    conda:
        "../../envs/meddiff.yaml"
    log:
        f"{R}/logs/report/synthesis_tables.log",
    shell:
        "meddiff report-synthesis {R} --config {RESOLVED} > {log} 2>&1"


rule denoising_table:
    input:
        metrics=rules.denoise.output.metrics,
        examples=rules.denoise.output.examples,
    output:
        table=f"{R}/tables/table5.csv",
        table_md=f"{R}/tables/table5.md",
        figure=f"{R}/figures/figure6_denoising.png",
    conda:
        "../../envs/meddiff.yaml"
    log:
        f"{R}/logs/report/denoising_table.log",
    shell:
        "meddiff report-denoising {input.metrics} {input.examples} {R} --config {RESOLVED} > {log} 2>&1"


rule anomaly_table:
    input:
        metrics=rules.anomaly.output.metrics,
        examples=rules.anomaly.output.examples,
    output:
        table=f"{R}/tables/table6.csv",
        table_md=f"{R}/tables/table6.md",
        figure=f"{R}/figures/figure7_anomaly.png",
    conda:
        "../../envs/meddiff.yaml"
    log:
        f"{R}/logs/report/anomaly_table.log",
    shell:
        "meddiff report-anomaly {input.metrics} {input.examples} {R} --config {RESOLVED} > {log} 2>&1"
