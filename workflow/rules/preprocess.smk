rule preprocess:
    input:
        image=raw_image,
        mask=rules.masks.output.mask,
        lesion=raw_lesion,
    output:
        cache=directory(f"{R}/cache/{{dataset}}/{{case}}"),
    conda:
        "../../envs/meddiff.yaml"
    log:
        f"{R}/logs/preprocess/{{dataset}}/{{case}}.log",
    benchmark:
        f"{R}/benchmarks/preprocess/{{dataset}}/{{case}}.tsv"
    params:
        preprocess=CFG.preprocess,
        regions=lambda w: dataset_regions(w.dataset),
        lesion=lambda w, input: f"--lesion {input.lesion}" if input.lesion else "",
    shell:
        "meddiff preprocess {input.image} {input.mask} {output.cache} --dataset {wildcards.dataset}"
        " --case {wildcards.case} {params.lesion} --config {RESOLVED} > {log} 2>&1"


rule dataset_done:
    input:
        case_caches,
    output:
        done=f"{R}/cache/{{dataset}}.done",
    conda:
        "../../envs/meddiff.yaml"
    log:
        f"{R}/logs/preprocess/{{dataset}}.done.log",
    shell:
        "meddiff list-caches {output.done} {input} > {log} 2>&1"
