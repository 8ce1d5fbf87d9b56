# ControlNet fine-tuning of the foundation model (paper 3.3, eq. 4), one model per task condition, and Table 8's
# lesion models trained from scratch with the same architecture (lesion_scratch, lesion_medddpm). Resumable
# like pre-training: the job keeps its last checkpoint in models/controlnet_<task>/last and continues from it.
rule finetune:
    input:
        foundation=f"{R}/models/{FOUNDATION}/model",
        manifest=f"{R}/manifest.csv",
        precision=rules.probe_precision.output.probe,
        settings=lambda w: settings(
            "finetune-sr" if w.task == "sr" else "finetune-lesion"
        ),
    output:
        model=directory(f"{R}/models/controlnet_{{task}}/model"),
    log:
        f"{R}/logs/finetune/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/finetune/{{task}}.tsv"
    wildcard_constraints:
        task="sr|lesion|lesion_scratch|lesion_medddpm",
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    shell:
        "meddiff --threads {threads} finetune {wildcards.task} {input.foundation} {input.manifest} {output.model}"
        " --precision {input.precision} --config {input.settings} > {log} 2>&1"
