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
        "meddiff manifest {output.manifest} {input} --config {params.config} > {log} 2>&1"


# Resumable: the job keeps its last checkpoint in models/<variant>/last (not an output, so Snakemake
# never deletes it) and continues from there when rerun after an interruption.
rule train:
    input:
        manifest=f"{R}/manifest.csv",
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
        "meddiff train {wildcards.variant} {input.manifest} {output.model} --config {params.config} > {log} 2>&1"


# training.foundation_steps > training.steps: the last variant's finished run continues to more steps.
rule train_foundation:
    input:
        manifest=f"{R}/manifest.csv",
        run=f"{R}/models/{VARIANTS[-1]}/model",
    output:
        model=directory(f"{R}/models/{FOUNDATION_RUN}/model"),
    log:
        f"{R}/logs/train/{FOUNDATION_RUN}.log",
    benchmark:
        f"{R}/benchmarks/train/{FOUNDATION_RUN}.tsv"
    conda:
        "../../envs/meddiff.yaml"
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
        f"meddiff train {FOUNDATION_RUN} {{input.manifest}} {{output.model}} --continue-from {{params.run}}"
        " --config {params.config} > {log} 2>&1"
