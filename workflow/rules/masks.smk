rule masks:
    input:
        image=raw_image,
    output:
        mask=f"{R}/masks/{{dataset}}/{{case}}.nii.gz",
    conda:
        "../../envs/meddiff.yaml"
    log:
        f"{R}/logs/masks/{{dataset}}/{{case}}.log",
    benchmark:
        f"{R}/benchmarks/masks/{{dataset}}/{{case}}.tsv"
    params:
        masks=CFG.masks,
    resources:
        gpu=1 if CFG.masks.backend == "totalsegmentator" else 0,
    shell:
        "meddiff masks {input.image} {output.mask} --config {RESOLVED} > {log} 2>&1"
