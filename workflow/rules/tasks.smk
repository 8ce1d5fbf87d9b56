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


rule super_resolve:
    input:
        model=f"{R}/models/controlnet_sr/model",
        manifest=f"{R}/manifest.csv",
        precision=rules.probe_precision.output.probe,
        settings=settings("super-resolve"),
    output:
        task=directory(f"{R}/super_resolution"),
    log:
        f"{R}/logs/super_resolve.log",
    benchmark:
        f"{R}/benchmarks/super_resolve.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    shell:
        "meddiff --threads {threads} super-resolve {input.model} {input.manifest} {output.task}"
        " --precision {input.precision} --config {input.settings} > {log} 2>&1"


# Table 8's three models, in the order `meddiff generate-lesions` takes them (meddiff.cli.LESION_MODELS)
LESION_MODEL_TASKS = ["lesion_medddpm", "lesion_scratch", "lesion"]


rule generate_lesions:
    input:
        models=[f"{R}/models/controlnet_{t}/model" for t in LESION_MODEL_TASKS],
        manifest=f"{R}/manifest.csv",
        precision=rules.probe_precision.output.probe,
        settings=settings("generate-lesions"),
    output:
        task=directory(f"{R}/lesions/generated"),
    log:
        f"{R}/logs/generate_lesions.log",
    benchmark:
        f"{R}/benchmarks/generate_lesions.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    shell:
        "meddiff --threads {threads} generate-lesions {input.manifest} {output.task} {input.models}"
        " --precision {input.precision} --config {input.settings} > {log} 2>&1"


rule inpaint_lesions:
    input:
        model=f"{R}/models/controlnet_lesion/model",
        manifest=f"{R}/manifest.csv",
        precision=rules.probe_precision.output.probe,
        settings=settings("inpaint-lesions"),
    output:
        task=directory(f"{R}/lesions/inpainted"),
    log:
        f"{R}/logs/inpaint_lesions.log",
    benchmark:
        f"{R}/benchmarks/inpaint_lesions.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    shell:
        "meddiff --threads {threads} inpaint-lesions {input.model} {input.manifest} {output.task}"
        " --precision {input.precision} --config {input.settings} > {log} 2>&1"
