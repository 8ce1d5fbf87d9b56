# MedDiff-FM as a workflow. Default config: the CPU demo (config/demo.yaml).
# Paper scale: snakemake --configfile config/config.yaml --workflow-profile workflow/profiles/slurm
from snakemake.utils import min_version, validate

min_version("9.0")


if not config:

    configfile: "config/demo.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/settings.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/tasks.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
