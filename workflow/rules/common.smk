# Paths, input functions and wildcard constraints: the only place paths are built.
import re
from pathlib import Path

from meddiff.config import (
    COMMAND_SECTIONS,
    FOUNDATION_RUN,
    config_from_dict,
    section_values,
    write_resolved_config,
    write_sections,
)
from meddiff.data.fetch import read_case_index
from meddiff.data.manifest import evaluation_crops, read_manifest
from meddiff.data.registry import dataset_spec, load_registry, require_reference_labels
from meddiff.errors import DatasetMissingError

CFG = config_from_dict(config)
RUN = CFG.run
R = f"results/{RUN}"
REGISTRY = load_registry(CFG.data.registry)
PRETRAIN = CFG.data.datasets
ALL_DATASETS = list(dict.fromkeys(PRETRAIN + CFG.data.task_datasets))
for _name in ALL_DATASETS:
    dataset_spec(
        REGISTRY, _name
    )  # a misspelt dataset fails here, naming the known ones

# threads: of the network rules; Snakemake lowers it to --cores on smaller machines. Data rules take 1
# thread each so that cases run side by side.
TORCH_THREADS = 8
# Each `meddiff` command reads only the settings meddiff.config.COMMAND_SECTIONS declares for it, from
# results/<run>/config/<command>.yaml; the job writing that file has exactly those values as params:, so a
# changed setting reruns the commands that read it (and what depends on their outputs) and nothing else.
# The whole resolved config (defaults filled, --config overrides applied) is written by a job too, for the
# tables' provenance; neither is written when the Snakefile is merely parsed (dry runs, --lint).
RESOLVED = f"{R}/config.resolved.yaml"
SETTINGS_KEYS = [
    *COMMAND_SECTIONS,
    *(f"train.{v.name}" for v in CFG.variants),
    f"train.{FOUNDATION_RUN}",
]


def settings(key):
    """The settings file of command ``key`` (``train.<variant>`` for training)."""
    return f"{R}/config/{key}.yaml"


wildcard_constraints:
    dataset="|".join(ALL_DATASETS),
    case=r"[A-Za-z0-9_.-]+",
    settings_key="|".join(re.escape(k) for k in SETTINGS_KEYS),


def results_folder(output):
    """results/<run> of a report rule, from its first output (results/<run>/tables/<file>)."""
    return str(Path(output[0]).parent.parent)


def dataset_cases(dataset):
    """Cases of a dataset, known once its fetch checkpoint has run."""
    index = checkpoints.fetch.get(dataset=dataset).output.index
    return {c.case: c for c in read_case_index(index)}


def raw_image(wildcards):
    return str(dataset_cases(wildcards.dataset)[wildcards.case].image)


def reference_labels(wildcards):
    """The case's shipped label map when masks.backend is 'reference' (else nothing)."""
    if CFG.masks.backend != "reference":
        return []
    labels = dataset_cases(wildcards.dataset)[wildcards.case].labels
    if labels is None:
        raise DatasetMissingError(
            f"{wildcards.dataset}/{wildcards.case}: no label file matches the registry's label_glob, "
            "which masks.backend 'reference' needs"
        )
    return [str(labels)]


def raw_lesion(wildcards):
    lesion = dataset_cases(wildcards.dataset)[wildcards.case].lesion
    return [str(lesion)] if lesion else []


def case_regions(wildcards):
    """`--region` options of a case: its own region when the dataset mixes regions, else the dataset's."""
    own = dataset_cases(wildcards.dataset)[wildcards.case].region
    return " ".join(
        f"--region {r}" for r in ([own] if own else REGISTRY[wildcards.dataset].regions)
    )


def case_caches(wildcards):
    return [
        f"{R}/cache/{wildcards.dataset}/{case}"
        for case in dataset_cases(wildcards.dataset)
    ]


def preprocessed_datasets():
    """Datasets that go through masks and preprocessing (2D PNG stacks do not)."""
    return [d for d in ALL_DATASETS if REGISTRY[d].format != "png_stack"]


if CFG.masks.backend == "reference":
    for _name in preprocessed_datasets():
        require_reference_labels(REGISTRY[_name])  # fails here, before any job runs


def all_targets():
    targets = [f"{R}/datasets/{d}.tsv" for d in ALL_DATASETS]
    targets += [f"{R}/cache/{d}.done" for d in preprocessed_datasets()]
    targets += [f"{R}/tables/table{n}.md" for n in (3, 4, 5, 6)]
    # Table 7 super-resolves test crops of the manifest (thick slices averaged from thin ones); real RPLHR-CT
    # thick/thin pairs (meddiff.data.rplhr) are not wired into the workflow yet, so the paper config skips it.
    if CFG.super_resolution.dataset in PRETRAIN:
        targets.append(f"{R}/tables/table7.md")
    # Tables 8-9 likewise read the lesion crops of the manifest (MSD, lymph-node sets are task datasets, not yet in it)
    if CFG.lesions.dataset in PRETRAIN:
        targets += [f"{R}/tables/table8.md", f"{R}/tables/table9.md"]
    return targets


VARIANTS = [v.name for v in CFG.variants]
# The last variant is the full MedDiff-FM. Its model folder is the foundation model that Table 4 and the
# tasks use, unless training.foundation_steps continues that run in models/foundation.
FOUNDATION = CFG.foundation_run
# Every trained model folder: the variants, then the foundation run when it is a separate one.
RUNS = list(dict.fromkeys(VARIANTS + [FOUNDATION]))


wildcard_constraints:
    variant="|".join(RUNS),
    region="han|chest|abdomen",
    mode="conditional|unconditional",


def test_crops():
    """(dataset, case, region) of the evaluated test crops, known once the manifest checkpoint has run."""
    manifest = read_manifest(checkpoints.manifest.get().output.manifest)
    rows = evaluation_crops(manifest, CFG.evaluation.synthesis_cases)
    return list(rows[["dataset", "case", "region"]].itertuples(index=False, name=None))


def synthetic_volumes(wildcards):
    return [
        f"{R}/synthesis/{wildcards.variant}/{wildcards.mode}/{dataset}/{region}/{case}.nii.gz"
        for dataset, case, region in test_crops()
    ]


def synthesis_evaluations():
    """Every synthesis evaluation Tables 3-4 and Figure 5 read (metrics, features, examples of each model)."""
    runs = [f"{run}_conditional" for run in RUNS]
    if CFG.training.condition_dropout > 0:
        runs.append(f"{FOUNDATION}_unconditional")
    if CFG.evaluation.maisi_output:
        runs.append("maisi")
    return [
        f"{R}/evaluation/synthesis/{run}{suffix}"
        for run in runs
        for suffix in (".csv", ".features.npz", ".examples.npz")
    ]


def maisi_volumes(wildcards):
    """The user's MAISI volume of every evaluated test crop (evaluation.maisi_output/<dataset>/<region>/<case>.nii.gz)."""
    return [
        f"{CFG.evaluation.maisi_output}/{dataset}/{region}/{case}.nii.gz"
        for dataset, case, region in test_crops()
    ]
