checkpoint manifest:
    input:
        done=expand(f"{R}/cache/{{dataset}}.done", dataset=PRETRAIN),
        settings=settings("manifest"),
    output:
        manifest=f"{R}/manifest.csv",
    log:
        f"{R}/logs/manifest.log",
    conda:
        "../../envs/meddiff.yaml"
    shell:
        "meddiff --threads {threads} manifest {output.manifest} {input.done} --config {input.settings} > {log} 2>&1"


# training.precision / sampling.precision "auto": fp32 vs bf16 timed once per run on the real network.
rule probe_precision:
    input:
        settings=settings("probe-precision"),
    output:
        probe=f"{R}/precision.json",
    log:
        f"{R}/logs/probe_precision.log",
    benchmark:
        f"{R}/benchmarks/probe_precision.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    shell:
        "meddiff --threads {threads} probe-precision {output.probe} --config {input.settings} > {log} 2>&1"


# Resumable: the job keeps its last checkpoint in models/<variant>/last (not an output, so Snakemake
# never deletes it) and continues from there when rerun after an interruption.
rule train:
    input:
        manifest=f"{R}/manifest.csv",
        precision=rules.probe_precision.output.probe,
        settings=settings("train.{variant}"),
    output:
        model=directory(f"{R}/models/{{variant}}/model"),
    log:
        f"{R}/logs/train/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{variant}}.tsv"
    wildcard_constraints:
        variant="|".join(VARIANTS),
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    shell:
        "meddiff --threads {threads} train {wildcards.variant} {input.manifest} {output.model}"
        " --precision {input.precision} --config {input.settings} > {log} 2>&1"


# training.foundation_steps > training.steps: the last variant's finished run continues to more steps.
rule train_foundation:
    input:
        manifest=f"{R}/manifest.csv",
        run=f"{R}/models/{VARIANTS[-1]}/model",
        precision=rules.probe_precision.output.probe,
        settings=settings(f"train.{FOUNDATION_RUN}"),
    output:
        model=directory(f"{R}/models/{FOUNDATION_RUN}/model"),
    log:
        f"{R}/logs/train/{FOUNDATION_RUN}.log",
    benchmark:
        f"{R}/benchmarks/train/{FOUNDATION_RUN}.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    params:
        run=lambda w, input: Path(input.run).parent,
    shell:
        f"meddiff --threads {{threads}} train {FOUNDATION_RUN} {{input.manifest}} {{output.model}}"
        " --continue-from {params.run} --precision {input.precision} --config {input.settings} > {log} 2>&1"
