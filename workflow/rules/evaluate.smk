rule evaluate_synthesis:
    input:
        synthetic_volumes,
        manifest=f"{R}/manifest.csv",
        settings=settings("evaluate-synthesis"),
    output:
        metrics=f"{R}/evaluation/synthesis/{{variant}}_{{mode}}.csv",
        features=f"{R}/evaluation/synthesis/{{variant}}_{{mode}}.features.npz",
        examples=f"{R}/evaluation/synthesis/{{variant}}_{{mode}}.examples.npz",
    log:
        f"{R}/logs/evaluate_synthesis/{{variant}}_{{mode}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate_synthesis/{{variant}}_{{mode}}.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: 2
    params:
        folder=lambda w: f"{R}/synthesis/{w.variant}/{w.mode}",
    shell:
        "meddiff --threads {threads} evaluate-synthesis {input.manifest} {params.folder} {output.metrics}"
        " {output.features} {output.examples} --config {input.settings} > {log} 2>&1"


# MAISI volumes the user generated for the same test crops (evaluation.maisi_output), scored like ours.
rule evaluate_maisi:
    input:
        maisi_volumes,
        manifest=f"{R}/manifest.csv",
        settings=settings("evaluate-synthesis"),
    output:
        metrics=f"{R}/evaluation/synthesis/maisi.csv",
        features=f"{R}/evaluation/synthesis/maisi.features.npz",
        examples=f"{R}/evaluation/synthesis/maisi.examples.npz",
    log:
        f"{R}/logs/evaluate_synthesis/maisi.log",
    benchmark:
        f"{R}/benchmarks/evaluate_synthesis/maisi.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: 2
    params:
        folder=CFG.evaluation.maisi_output,
    shell:
        "meddiff --threads {threads} evaluate-synthesis {input.manifest} {params.folder} {output.metrics}"
        " {output.features} {output.examples} --config {input.settings} > {log} 2>&1"


rule evaluate_denoising:
    input:
        task=rules.denoise.output.task,
        settings=settings("evaluate-denoising"),
    output:
        evaluation=directory(f"{R}/evaluation/denoising"),
    log:
        f"{R}/logs/evaluate_denoising.log",
    benchmark:
        f"{R}/benchmarks/evaluate_denoising.tsv"
    conda:
        "../../envs/meddiff.yaml"
    shell:
        "meddiff --threads {threads} evaluate-denoising {input.task} {output.evaluation} --config {input.settings} > {log} 2>&1"


rule evaluate_anomaly:
    input:
        maps=rules.anomaly.output.maps,
        settings=settings("evaluate-anomaly"),
    output:
        metrics=f"{R}/evaluation/anomaly.csv",
        examples=f"{R}/evaluation/anomaly_examples.npz",
    log:
        f"{R}/logs/evaluate_anomaly.log",
    benchmark:
        f"{R}/benchmarks/evaluate_anomaly.tsv"
    conda:
        "../../envs/meddiff.yaml"
    shell:
        "meddiff --threads {threads} evaluate-anomaly {input.maps} {output.metrics} {output.examples}"
        " --config {input.settings} > {log} 2>&1"


rule evaluate_super_resolution:
    input:
        task=rules.super_resolve.output.task,
        settings=settings("evaluate-super-resolution"),
    output:
        evaluation=directory(f"{R}/evaluation/super_resolution"),
    log:
        f"{R}/logs/evaluate_super_resolution.log",
    benchmark:
        f"{R}/benchmarks/evaluate_super_resolution.tsv"
    conda:
        "../../envs/meddiff.yaml"
    shell:
        "meddiff --threads {threads} evaluate-super-resolution {input.task} {output.evaluation}"
        " --config {input.settings} > {log} 2>&1"


# The nnU-Net judge of Tables 8-9 (paper 4.1.3): export, plan + preprocess and train in the run's own nnU-Net
# folders, which stay when the job is killed (resume from nnU-Net's latest checkpoint); the JSON marks it done.
rule nnunet_judge:
    input:
        manifest=f"{R}/manifest.csv",
        settings=settings("train-judge"),
    output:
        judge=f"{R}/nnunet/judge.json",
    log:
        f"{R}/logs/nnunet_judge.log",
    benchmark:
        f"{R}/benchmarks/nnunet_judge.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    params:
        root=lambda w, output: Path(output.judge).parent,
    shell:
        "meddiff --threads {threads} train-judge {input.manifest} {params.root} {output.judge}"
        " --config {input.settings} > {log} 2>&1"


rule evaluate_lesions:
    input:
        task=f"{R}/lesions/generated",
        manifest=f"{R}/manifest.csv",
        judge=rules.nnunet_judge.output.judge,
        settings=settings("evaluate-lesions"),
    output:
        evaluation=directory(f"{R}/evaluation/lesions"),
    log:
        f"{R}/logs/evaluate_lesions.log",
    benchmark:
        f"{R}/benchmarks/evaluate_lesions.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    shell:
        "meddiff --threads {threads} evaluate-lesions {input.task} {input.manifest} {input.judge} {output.evaluation}"
        " --config {input.settings} > {log} 2>&1"


rule evaluate_inpainting:
    input:
        task=rules.inpaint_lesions.output.task,
        manifest=f"{R}/manifest.csv",
        judge=rules.nnunet_judge.output.judge,
        settings=settings("evaluate-inpainting"),
    output:
        evaluation=directory(f"{R}/evaluation/inpainting"),
    log:
        f"{R}/logs/evaluate_inpainting.log",
    benchmark:
        f"{R}/benchmarks/evaluate_inpainting.tsv"
    conda:
        "../../envs/meddiff.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    shell:
        "meddiff --threads {threads} evaluate-inpainting {input.task} {input.manifest} {input.judge}"
        " {output.evaluation} --config {input.settings} > {log} 2>&1"
