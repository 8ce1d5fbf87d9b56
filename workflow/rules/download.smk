checkpoint fetch:
    input:
        settings=settings("fetch"),
    output:
        index=f"{R}/datasets/{{dataset}}.tsv",
    log:
        f"{R}/logs/fetch/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/fetch/{{dataset}}.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: 2
    shell:
        "meddiff --threads {threads} fetch {wildcards.dataset} {output.index} --workers {threads} --config {input.settings} > {log} 2>&1"
