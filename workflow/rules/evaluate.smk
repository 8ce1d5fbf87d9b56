rule evaluate_synthesis:
    input:
        synthetic_volumes,
        manifest=f"{R}/manifest.csv",
        settings=settings("evaluate-synthesis"),
    output:
        metrics=f"{R}/evaluation/synthesis/{{variant}}_{{mode}}.csv",
        features=f"{R}/evaluation/synthesis/{{variant}}_{{mode}}.features.npz",
        examples=f"{R}/evaluation/synthesis/{{variant}}_{{mode}}.examples.npz",
    log:
        f"{R}/logs/evaluate_synthesis/{{variant}}_{{mode}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate_synthesis/{{variant}}_{{mode}}.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: 2
    params:
        folder=lambda w: f"{R}/synthesis/{w.variant}/{w.mode}",
    shell:
        "meddiff --threads {threads} evaluate-synthesis {input.manifest} {params.folder} {output.metrics}"
        " {output.features} {output.examples} --config {input.settings} > {log} 2>&1"


# MAISI volumes the user generated for the same test crops (evaluation.maisi_output), scored like ours.
rule evaluate_maisi:
    input:
        maisi_volumes,
        manifest=f"{R}/manifest.csv",
        settings=settings("evaluate-synthesis"),
    output:
        metrics=f"{R}/evaluation/synthesis/maisi.csv",
        features=f"{R}/evaluation/synthesis/maisi.features.npz",
        examples=f"{R}/evaluation/synthesis/maisi.examples.npz",
    log:
        f"{R}/logs/evaluate_synthesis/maisi.log",
    benchmark:
        f"{R}/benchmarks/evaluate_synthesis/maisi.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: 2
    params:
        folder=CFG.evaluation.maisi_output,
    shell:
        "meddiff --threads {threads} evaluate-synthesis {input.manifest} {params.folder} {output.metrics}"
        " {output.features} {output.examples} --config {input.settings} > {log} 2>&1"


rule evaluate_denoising:
    input:
        task=rules.denoise.output.task,
        settings=settings("evaluate-denoising"),
    output:
        evaluation=directory(f"{R}/evaluation/denoising"),
    log:
        f"{R}/logs/evaluate_denoising.log",
    benchmark:
        f"{R}/benchmarks/evaluate_denoising.tsv"
    conda:
        "../../envs/meddiff.yaml"
    shell:
        "meddiff --threads {threads} evaluate-denoising {input.task} {output.evaluation} --config {input.settings} > {log} 2>&1"


rule evaluate_anomaly:
    input:
        maps=rules.anomaly.output.maps,
        settings=settings("evaluate-anomaly"),
    output:
        metrics=f"{R}/evaluation/anomaly.csv",
        examples=f"{R}/evaluation/anomaly_examples.npz",
    log:
        f"{R}/logs/evaluate_anomaly.log",
    benchmark:
        f"{R}/benchmarks/evaluate_anomaly.tsv"
    conda:
        "../../envs/meddiff.yaml"
    shell:
        "meddiff --threads {threads} evaluate-anomaly {input.maps} {output.metrics} {output.examples}"
        " --config {input.settings} > {log} 2>&1"
