rule synthesis_tables:
    input:
        evaluations=synthesis_evaluations(),
        models=expand(f"{R}/models/{{run}}/model", run=RUNS),
        config=RESOLVED,
        settings=settings("report-synthesis"),
    output:
        table3=report(
            f"{R}/tables/table3.csv",
            caption="../report/table3.rst",
            category="Synthesis",
        ),
        table3_md=f"{R}/tables/table3.md",
        table4=report(
            f"{R}/tables/table4.csv",
            caption="../report/table4.rst",
            category="Synthesis",
        ),
        table4_md=f"{R}/tables/table4.md",
        figure=report(
            f"{R}/figures/figure5_synthesis.png",
            caption="../report/figure5.rst",
            category="Synthesis",
        ),
        training=report(
            f"{R}/tables/training.csv",
            caption="../report/training.rst",
            category="Pre-training",
        ),
    log:
        f"{R}/logs/report/synthesis_tables.log",
    conda:
        "../../envs/meddiff.yaml"
    params:
        results=lambda w, output: results_folder(output),
    shell:
        "meddiff --threads {threads} report-synthesis {params.results} --config {input.settings} > {log} 2>&1"


rule denoising_table:
    input:
        evaluation=rules.evaluate_denoising.output.evaluation,
        task=rules.denoise.output.task,
        config=RESOLVED,
        settings=settings("report-denoising"),
    output:
        table=report(
            f"{R}/tables/table5.csv",
            caption="../report/table5.rst",
            category="Denoising",
        ),
        table_md=f"{R}/tables/table5.md",
        figure=report(
            f"{R}/figures/figure6_denoising.png",
            caption="../report/figure6.rst",
            category="Denoising",
        ),
    log:
        f"{R}/logs/report/denoising_table.log",
    conda:
        "../../envs/meddiff.yaml"
    params:
        results=lambda w, output: results_folder(output),
    shell:
        "meddiff --threads {threads} report-denoising {input.evaluation} {input.task}/noise.json {params.results}"
        " --config {input.settings} > {log} 2>&1"


rule anomaly_table:
    input:
        metrics=rules.evaluate_anomaly.output.metrics,
        examples=rules.evaluate_anomaly.output.examples,
        config=RESOLVED,
        settings=settings("report-anomaly"),
    output:
        table=report(
            f"{R}/tables/table6.csv",
            caption="../report/table6.rst",
            category="Anomaly detection",
        ),
        table_md=f"{R}/tables/table6.md",
        figure=report(
            f"{R}/figures/figure7_anomaly.png",
            caption="../report/figure7.rst",
            category="Anomaly detection",
        ),
    log:
        f"{R}/logs/report/anomaly_table.log",
    conda:
        "../../envs/meddiff.yaml"
    params:
        results=lambda w, output: results_folder(output),
    shell:
        "meddiff --threads {threads} report-anomaly {input.metrics} {input.examples} {params.results}"
        " --config {input.settings} > {log} 2>&1"


rule super_resolution_table:
    input:
        evaluation=rules.evaluate_super_resolution.output.evaluation,
        config=RESOLVED,
        settings=settings("report-super-resolution"),
    output:
        table=report(
            f"{R}/tables/table7.csv",
            caption="../report/table7.rst",
            category="Super-resolution",
        ),
        table_md=f"{R}/tables/table7.md",
        figure=report(
            f"{R}/figures/figure8_super_resolution.png",
            caption="../report/figure8.rst",
            category="Super-resolution",
        ),
    log:
        f"{R}/logs/report/super_resolution_table.log",
    conda:
        "../../envs/meddiff.yaml"
    params:
        results=lambda w, output: results_folder(output),
    shell:
        "meddiff --threads {threads} report-super-resolution {input.evaluation} {params.results}"
        " --config {input.settings} > {log} 2>&1"


rule lesions_table:
    input:
        evaluation=rules.evaluate_lesions.output.evaluation,
        inpainting=rules.evaluate_inpainting.output.evaluation,
        judge=rules.nnunet_judge.output.judge,
        config=RESOLVED,
        settings=settings("report-lesions"),
    output:
        table=report(
            f"{R}/tables/table8.csv",
            caption="../report/table8.rst",
            category="Lesion generation",
        ),
        table_md=f"{R}/tables/table8.md",
        table9=report(
            f"{R}/tables/table9.csv",
            caption="../report/table9.rst",
            category="Lesion inpainting",
        ),
        table9_md=f"{R}/tables/table9.md",
    log:
        f"{R}/logs/report/lesions_table.log",
    conda:
        "../../envs/meddiff.yaml"
    params:
        results=lambda w, output: results_folder(output),
    shell:
        "meddiff --threads {threads} report-lesions {input.evaluation} {input.inpainting} {input.judge}"
        " {params.results}"
        " --config {input.settings} > {log} 2>&1"
