rule preprocess:
    input:
        image=raw_image,
        mask=rules.masks.output.mask,
        lesion=raw_lesion,
        settings=settings("preprocess"),
    output:
        cache=directory(f"{R}/cache/{{dataset}}/{{case}}"),
    log:
        f"{R}/logs/preprocess/{{dataset}}/{{case}}.log",
    benchmark:
        f"{R}/benchmarks/preprocess/{{dataset}}/{{case}}.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: 1
    params:
        regions=case_regions,
        lesion=lambda w, input: f"--lesion {input.lesion}" if input.lesion else "",
    shell:
        "meddiff --threads {threads} preprocess {input.image} {input.mask} {output.cache} --dataset {wildcards.dataset}"
        " --case {wildcards.case} {params.regions} {params.lesion} --config {input.settings} > {log} 2>&1"


rule dataset_done:
    input:
        case_caches,
    output:
        done=f"{R}/cache/{{dataset}}.done",
    log:
        f"{R}/logs/preprocess/{{dataset}}.done.log",
    conda:
        "../../envs/meddiff.yaml"
    shell:
        "meddiff --threads {threads} list-caches {output.done} {input} > {log} 2>&1"
