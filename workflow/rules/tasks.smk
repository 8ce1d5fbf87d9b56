rule synthesize:
    input:
        model=f"{R}/models/{{variant}}/model",
        cache=f"{R}/cache/{{dataset}}/{{case}}",
        precision=rules.probe_precision.output.probe,
        settings=settings("synthesize"),
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
    shell:
        "meddiff --threads {threads} synthesize {input.model} {input.cache} {wildcards.region} {output.volume}"
        " --mode {wildcards.mode} --precision {input.precision} --config {input.settings} > {log} 2>&1"


rule denoise:
    input:
        model=f"{R}/models/{FOUNDATION}/model",
        manifest=f"{R}/manifest.csv",
        precision=rules.probe_precision.output.probe,
        settings=settings("denoise"),
    output:
        task=directory(f"{R}/denoising"),
    log:
        f"{R}/logs/denoise.log",
    benchmark:
        f"{R}/benchmarks/denoise.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    shell:
        "meddiff --threads {threads} denoise {input.model} {input.manifest} {output.task}"
        " --precision {input.precision} --config {input.settings} > {log} 2>&1"


rule anomaly:
    input:
        model=f"{R}/models/{FOUNDATION}/model",
        precision=rules.probe_precision.output.probe,
        settings=settings("anomaly"),
    output:
        maps=f"{R}/anomaly/maps.npz",
    log:
        f"{R}/logs/anomaly.log",
    benchmark:
        f"{R}/benchmarks/anomaly.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    shell:
        "meddiff --threads {threads} anomaly {input.model} {output.maps}"
        " --precision {input.precision} --config {input.settings} > {log} 2>&1"
