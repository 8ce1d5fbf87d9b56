rule synthesize:
    input:
        model=f"{R}/models/{{variant}}/model",
        cache=f"{R}/cache/{{dataset}}/{{case}}",
        precision=rules.probe_precision.output.probe,
    output:
        volume=f"{R}/synthesis/{{variant}}/{{mode}}/{{dataset}}/{{region}}/{{case}}.nii.gz",
    log:
        f"{R}/logs/synthesize/{{variant}}/{{mode}}/{{dataset}}/{{region}}/{{case}}.log",
    benchmark:
        f"{R}/benchmarks/synthesize/{{variant}}/{{mode}}/{{dataset}}/{{region}}/{{case}}.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    params:
        config=RESOLVED,
        sampling=CFG.sampling,
        seed=CFG.seed,
    shell:
        "meddiff --threads {threads} synthesize {input.model} {input.cache} {wildcards.region} {output.volume}"
        " --mode {wildcards.mode} --precision {input.precision} --config {params.config} > {log} 2>&1"


rule denoise:
    input:
        model=f"{R}/models/{FOUNDATION}/model",
        manifest=f"{R}/manifest.csv",
        precision=rules.probe_precision.output.probe,
    output:
        evaluation=directory(f"{R}/evaluation/denoising"),
    log:
        f"{R}/logs/denoise.log",
    benchmark:
        f"{R}/benchmarks/denoise.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    params:
        config=RESOLVED,
        denoising=CFG.denoising,
        sampling=CFG.sampling,
    shell:
        "meddiff --threads {threads} denoise {input.model} {input.manifest} {output.evaluation}"
        " --precision {input.precision} --config {params.config} > {log} 2>&1"


rule anomaly:
    input:
        model=f"{R}/models/{FOUNDATION}/model",
        precision=rules.probe_precision.output.probe,
    output:
        metrics=f"{R}/evaluation/anomaly.csv",
        examples=f"{R}/evaluation/anomaly_examples.npz",
    log:
        f"{R}/logs/anomaly.log",
    benchmark:
        f"{R}/benchmarks/anomaly.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    params:
        config=RESOLVED,
        anomaly=CFG.anomaly,
        sampling=CFG.sampling,
    shell:
        "meddiff --threads {threads} anomaly {input.model} {output.metrics} {output.examples}"
        " --precision {input.precision} --config {params.config} > {log} 2>&1"
