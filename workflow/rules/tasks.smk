rule synthesize:
    input:
        model=f"{R}/models/{{variant}}/model",
        cache=f"{R}/cache/{{dataset}}/{{case}}",
    output:
        volume=f"{R}/synthesis/{{variant}}/{{mode}}/{{dataset}}/{{region}}/{{case}}.nii.gz",
    conda:
        "../../envs/meddiff.yaml"
    log:
        f"{R}/logs/synthesize/{{variant}}/{{mode}}/{{dataset}}/{{region}}/{{case}}.log",
    benchmark:
        f"{R}/benchmarks/synthesize/{{variant}}/{{mode}}/{{dataset}}/{{region}}/{{case}}.tsv"
    params:
        sampling=CFG.sampling,
        seed=CFG.seed,
    resources:
        gpu=1,
    shell:
        "meddiff synthesize {input.model} {input.cache} {wildcards.region} {output.volume}"
        " --mode {wildcards.mode} --config {RESOLVED} > {log} 2>&1"


rule denoise:
    input:
        model=f"{R}/models/{FOUNDATION}/model",
        manifest=f"{R}/manifest.csv",
    output:
        metrics=f"{R}/evaluation/denoising.csv",
        examples=f"{R}/evaluation/denoising_examples.npz",
    conda:
        "../../envs/meddiff.yaml"
    log:
        f"{R}/logs/denoise.log",
    benchmark:
        f"{R}/benchmarks/denoise.tsv"
    params:
        denoising=CFG.denoising,
        sampling=CFG.sampling,
    resources:
        gpu=1,
    shell:
        "meddiff denoise {input.model} {input.manifest} {output.metrics} {output.examples}"
        " --config {RESOLVED} > {log} 2>&1"


rule anomaly:
    input:
        model=f"{R}/models/{FOUNDATION}/model",
    output:
        metrics=f"{R}/evaluation/anomaly.csv",
        examples=f"{R}/evaluation/anomaly_examples.npz",
    conda:
        "../../envs/meddiff.yaml"
    log:
        f"{R}/logs/anomaly.log",
    benchmark:
        f"{R}/benchmarks/anomaly.tsv"
    params:
        anomaly=CFG.anomaly,
        sampling=CFG.sampling,
    resources:
        gpu=1,
    shell:
        "meddiff anomaly {input.model} {output.metrics} {output.examples} --config {RESOLVED} > {log} 2>&1"
