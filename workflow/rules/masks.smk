rule masks:
    input:
        image=raw_image,
        reference=reference_labels,
        settings=settings("masks"),
    output:
        mask=f"{R}/masks/{{dataset}}/{{case}}.nii.gz",
    log:
        f"{R}/logs/masks/{{dataset}}/{{case}}.log",
    benchmark:
        f"{R}/benchmarks/masks/{{dataset}}/{{case}}.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: 1
    resources:
        gpu=1 if CFG.masks.backend == "totalsegmentator" else 0,
    params:
        reference=lambda wildcards, input: (
            f"--reference {input.reference}" if input.reference else ""
        ),
    shell:
        "meddiff --threads {threads} masks {input.image} {output.mask} --config {input.settings} {params.reference} > {log} 2>&1"
