checkpoint fetch:
    output:
        index=f"{R}/datasets/{{dataset}}.tsv",
    conda:
        "../../envs/meddiff.yaml"
    log:
        f"{R}/logs/fetch/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/fetch/{{dataset}}.tsv"
    params:
        data=CFG.data,
    shell:
        "meddiff fetch {wildcards.dataset} {output.index} --config {RESOLVED} > {log} 2>&1"
