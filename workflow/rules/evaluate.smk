rule evaluate_synthesis:
    input:
        synthetic_volumes,
        manifest=f"{R}/manifest.csv",
    output:
        metrics=f"{R}/evaluation/synthesis/{{variant}}_{{mode}}.csv",
        features=f"{R}/evaluation/synthesis/{{variant}}_{{mode}}.features.npz",
    log:
        f"{R}/logs/evaluate_synthesis/{{variant}}_{{mode}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate_synthesis/{{variant}}_{{mode}}.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: 2
    params:
        config=RESOLVED,
        evaluation=CFG.evaluation,
        masks=CFG.masks,
        folder=lambda w: f"{R}/synthesis/{w.variant}/{w.mode}",
    shell:
        "meddiff --threads {threads} evaluate-synthesis {input.manifest} {params.folder} {output.metrics} {output.features}"
        " --config {params.config} > {log} 2>&1"
