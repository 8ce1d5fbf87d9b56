checkpoint manifest:
    input:
        expand(f"{R}/cache/{{dataset}}.done", dataset=PRETRAIN),
    output:
        manifest=f"{R}/manifest.csv",
    log:
        f"{R}/logs/manifest.log",
    conda:
        "../../envs/meddiff.yaml"
    params:
        config=RESOLVED,
        split=CFG.preprocess.split,
        seed=CFG.seed,
    shell:
        "meddiff --threads {threads} manifest {output.manifest} {input} --config {params.config} > {log} 2>&1"


# training.precision / sampling.precision "auto": fp32 vs bf16 timed once per run on the real network.
rule probe_precision:
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
    params:
        config=RESOLVED,
        model=CFG.model,
        precision=[
            CFG.training.precision,
            CFG.training.batch_size,
            CFG.sampling.precision,
        ],
        batch=CFG.sampling.patch_batch_size,
    shell:
        "meddiff --threads {threads} probe-precision {output.probe} --config {params.config} > {log} 2>&1"


# Resumable: the job keeps its last checkpoint in models/<variant>/last (not an output, so Snakemake
# never deletes it) and continues from there when rerun after an interruption.
rule train:
    input:
        manifest=f"{R}/manifest.csv",
        precision=rules.probe_precision.output.probe,
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
    params:
        config=RESOLVED,
        variant=lambda w: CFG.variant(w.variant),
        model=CFG.model,
        diffusion=CFG.diffusion,
        training=CFG.training,
        seed=CFG.seed,
    shell:
        "meddiff --threads {threads} train {wildcards.variant} {input.manifest} {output.model}"
        " --precision {input.precision} --config {params.config} > {log} 2>&1"


# training.foundation_steps > training.steps: the last variant's finished run continues to more steps.
rule train_foundation:
    input:
        manifest=f"{R}/manifest.csv",
        run=f"{R}/models/{VARIANTS[-1]}/model",
        precision=rules.probe_precision.output.probe,
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
        config=RESOLVED,
        run=lambda w, input: Path(input.run).parent,
        model=CFG.model,
        diffusion=CFG.diffusion,
        training=CFG.training,
        seed=CFG.seed,
    shell:
        f"meddiff --threads {{threads}} train {FOUNDATION_RUN} {{input.manifest}} {{output.model}}"
        " --continue-from {params.run} --precision {input.precision} --config {params.config} > {log} 2>&1"
