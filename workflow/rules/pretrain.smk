checkpoint manifest:
    input:
        expand(f"{R}/cache/{{dataset}}.done", dataset=PRETRAIN),
    output:
        manifest=f"{R}/manifest.csv",
    conda:
        "../../envs/meddiff.yaml"
    log:
        f"{R}/logs/manifest.log",
    params:
        split=CFG.preprocess.split,
        seed=CFG.seed,
    shell:
        "meddiff manifest {output.manifest} {input} --config {RESOLVED} > {log} 2>&1"


# Resumable: the job keeps its last checkpoint in models/<variant>/last (not an output, so Snakemake
# never deletes it) and continues from there when rerun after an interruption.
rule train:
    input:
        manifest=f"{R}/manifest.csv",
    output:
        model=directory(f"{R}/models/{{variant}}/model"),
    conda:
        "../../envs/meddiff.yaml"
    log:
        f"{R}/logs/train/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{variant}}.tsv"
    params:
        variant=lambda w: CFG.variant(w.variant),
        model=CFG.model,
        diffusion=CFG.diffusion,
        training=CFG.training,
        seed=CFG.seed,
    resources:
        gpu=1,
    shell:
        "meddiff train {wildcards.variant} {input.manifest} {output.model} --config {RESOLVED} > {log} 2>&1"
