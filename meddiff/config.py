"""Typed configuration.

The YAML is validated once against ``workflow/schemas/config.schema.yaml`` (which holds every default and
rejects unknown keys) and then handed down as the frozen dataclasses below. Library code receives the
small section it needs (e.g. a :class:`PreprocessConfig`), never the YAML.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from meddiff.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"
# Model folder of the foundation model when it trains longer than the Table 3 variants.
FOUNDATION_RUN = "foundation"


@dataclass(frozen=True)
class PhantomConfig:
    cases_per_region: dict[str, int]
    lesion_fraction: float
    spacing_jitter: bool


@dataclass(frozen=True)
class SplitConfig:
    train: float
    val: float
    test: float


@dataclass(frozen=True)
class DataConfig:
    root: str
    registry: str
    datasets: list[str]
    task_datasets: list[str]
    split: SplitConfig
    phantom: PhantomConfig


@dataclass(frozen=True)
class MasksConfig:
    backend: str
    body_threshold_hu: float
    fast: bool


@dataclass(frozen=True)
class Window:
    level: float
    width: float

    @property
    def bounds(self) -> tuple[float, float]:
        return self.level - self.width / 2, self.level + self.width / 2


@dataclass(frozen=True)
class PreprocessConfig:
    spacing_mm: tuple[float, float, float]
    image_interpolation: str
    windows: dict[str, Window]
    min_region_extent_mm: float


@dataclass(frozen=True)
class ModelConfig:
    patch_size: tuple[int, int, int]
    channels: tuple[int, ...]
    attention_levels: tuple[bool, ...]
    num_res_blocks: int
    num_head_channels: int
    norm_num_groups: int
    anatomy_embedding_dim: int
    position_frequencies: int


@dataclass(frozen=True)
class DiffusionConfig:
    num_train_timesteps: int
    schedule: str
    prediction: str


@dataclass(frozen=True)
class TrainingConfig:
    steps: int
    foundation_steps: int | None
    lr: float
    batch_size: int
    grad_accumulation: int
    level_probabilities: tuple[float, float, float]
    ema_decay: float
    condition_dropout: float
    checkpoint_every: int
    log_every: int
    precision: str
    num_workers: int


@dataclass(frozen=True)
class SamplingConfig:
    sampler: str
    steps: int
    overlap: float
    patch_batch_size: int
    blend: str
    precision: str  # "auto" until resolved by the precision probe (meddiff.diffusion.precision)


@dataclass(frozen=True)
class Variant:
    """One trained model: a row of the Table 3 ablation."""

    name: str
    label: str
    multilevel: bool
    position: str  # "none" | "coords" | "embedding"


@dataclass(frozen=True)
class EvaluationConfig:
    synthesis_cases: int
    medicalnet_weights: str | None
    maisi_output: str | None


@dataclass(frozen=True)
class DenoisingConfig:
    dataset: str
    dose_fraction: float
    incident_photons: float
    sigma_n: float | None
    lam: float
    steps: int
    window: tuple[float, float]
    cases: int
    zeta: float
    test_patients: list[str]


@dataclass(frozen=True)
class AnomalyConfig:
    dataset: str
    timestep: int
    organ: str
    smoothing_sigma_mm: float
    threshold: float
    cases: int
    slices_per_volume: int
    remove_organ_offset: bool


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int
    lr: float
    checkpoint_every: int


@dataclass(frozen=True)
class SuperResolutionConfig:
    dataset: str
    thick_factor: int
    sigma_n: float
    lam: float
    steps: int
    zeta: float
    cases: int
    trim_slices: int


@dataclass(frozen=True)
class LesionsConfig:
    dataset: str
    cases: int
    judge_epochs: int
    judge_iterations_per_epoch: int
    judge_patch_size: tuple[int, int, int] | None
    repaint_steps: int
    jump_length: int
    resamples: int


@dataclass(frozen=True)
class Config:
    run: str
    seed: int
    device: str
    data: DataConfig
    masks: MasksConfig
    preprocess: PreprocessConfig
    model: ModelConfig
    diffusion: DiffusionConfig
    training: TrainingConfig
    sampling: SamplingConfig
    variants: list[Variant]
    evaluation: EvaluationConfig
    denoising: DenoisingConfig
    anomaly: AnomalyConfig
    finetune: FinetuneConfig
    super_resolution: SuperResolutionConfig
    lesions: LesionsConfig

    @property
    def foundation_run(self) -> str:
        """Model folder (under ``models/``) of the foundation model that Table 4 and the tasks use: the last
        variant's own Table 3 run, or :data:`FOUNDATION_RUN` when ``training.foundation_steps`` continues
        that run beyond ``training.steps``."""
        return foundation_run(self.training.steps, self.training.foundation_steps, self.variants)

    def variant(self, name: str) -> Variant:
        """A variant by name; :data:`FOUNDATION_RUN` is the last variant (its longer run)."""
        if name == FOUNDATION_RUN:
            return self.variants[-1]
        for v in self.variants:
            if v.name == name:
                return v
        raise ConfigError(f"unknown variant {name!r}; the config defines {[v.name for v in self.variants]}")


def _build(tp, value, where: str):
    """Turn validated plain YAML data into the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _build(hints[f.name], value[f.name], f"{where}.{f.name}") for f in dataclasses.fields(tp)})
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _build(args[0], value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        args = typing.get_args(tp)
        item = args[0]
        return tuple(_build(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: _build(item, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        return float(value)
    return value


def validate(raw: dict) -> dict:
    """Validate ``raw`` against the schema, filling defaults in place (same call the Snakefile makes)."""
    from snakemake.utils import validate as snakemake_validate
    from snakemake.exceptions import WorkflowError

    try:
        snakemake_validate(raw, str(SCHEMA_PATH), set_default=True)
    except WorkflowError as err:
        raise ConfigError(f"invalid configuration: {err}") from None
    return raw


def config_from_dict(raw: dict) -> Config:
    """Validate a config mapping and return the typed :class:`Config`."""
    raw = validate(dict(raw))
    names = [v["name"] for v in raw["variants"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"variant names must be unique, got {names}")
    if FOUNDATION_RUN in names:
        raise ConfigError(f"variant name {FOUNDATION_RUN!r} is reserved for the foundation model's longer run")
    training = raw["training"]
    if training["foundation_steps"] is not None and training["foundation_steps"] < training["steps"]:
        raise ConfigError(
            f"training.foundation_steps ({training['foundation_steps']}) must be >= training.steps "
            f"({training['steps']}): the foundation model continues the last variant's run"
        )
    split = raw["data"]["split"]
    if abs(sum(split.values()) - 1.0) > 1e-6:
        raise ConfigError(f"data.split fractions must sum to 1, got {split}")
    if sum(raw["training"]["level_probabilities"]) <= 0:
        raise ConfigError("training.level_probabilities must not all be zero")
    model = raw["model"]
    if len(model["channels"]) != len(model["attention_levels"]):
        raise ConfigError("model.channels and model.attention_levels must have the same length")
    return _build(Config, raw, "config")


def _read_yaml(path: Path) -> dict:
    """The top-level mapping of a YAML file (loaded safely), or a one-line ConfigError naming the file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        # one line (PyYAML's message spans several); a python/* tag lands here too: safe_load refuses it
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML: {problem}{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def load_config(path: str | Path) -> Config:
    """Read, validate and type a YAML config file."""
    path = Path(path)
    raw = _read_yaml(path)
    try:
        return config_from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


# ---------------------------------------------------------------- what each command reads
# The settings each `meddiff` command reads, as dotted paths into the config. The workflow writes each
# command's values to results/<run>/config/<command>.yaml with a job whose params: are exactly these values
# (workflow/rules/common.smk), and the command receives only them (:func:`load_sections`). So changing a
# setting reruns exactly the commands that read it (and what depends on their outputs), and a command cannot
# read a setting it does not declare. "variant" is the trained variant: the one named after "train." in the
# command key ("train.<variant>"), else the foundation model's (the last one).
_PROVENANCE = ("run", "seed", "diffusion", "training.precision", "sampling.precision")
COMMAND_SECTIONS: dict[str, tuple[str, ...]] = {
    "fetch": ("seed", "data.root", "data.registry", "data.phantom"),
    "masks": ("masks",),
    "preprocess": ("data.registry", "preprocess"),
    "manifest": ("seed", "data.split"),
    "probe-precision": ("device", "model", "diffusion", "variant", "training.precision", "training.batch_size",
                        "sampling.precision", "sampling.patch_batch_size"),
    "train": ("seed", "device", "model", "diffusion", "training", "variant"),
    "synthesize": ("seed", "device", "sampling"),
    "evaluate-synthesis": ("device", "evaluation.synthesis_cases", "evaluation.medicalnet_weights", "masks"),
    "report-synthesis": (*_PROVENANCE, "data.datasets", "variants", "training.steps", "training.foundation_steps",
                         "masks.backend", "evaluation.maisi_output"),
    "denoise": ("seed", "device", "data.root", "preprocess.windows", "preprocess.spacing_mm",
                "preprocess.image_interpolation", "model.patch_size", "denoising", "sampling"),
    "evaluate-denoising": ("denoising.window",),
    "report-denoising": (*_PROVENANCE, "denoising"),
    "anomaly": ("seed", "device", "data.root", "preprocess.windows", "preprocess.spacing_mm", "model.patch_size",
                "masks.backend", "anomaly", "sampling"),
    "evaluate-anomaly": ("anomaly.dataset", "anomaly.threshold"),
    "report-anomaly": (*_PROVENANCE, "anomaly"),
    "finetune-sr": ("seed", "device", "training", "finetune", "super_resolution.thick_factor"),
    "finetune-lesion": ("seed", "device", "training", "finetune"),
    "super-resolve": ("seed", "device", "sampling", "super_resolution"),
    "evaluate-super-resolution": ("super_resolution.trim_slices",),
    "report-super-resolution": (*_PROVENANCE, "finetune", "super_resolution"),
    "train-judge": ("seed", "device", "lesions.dataset", "lesions.judge_epochs", "lesions.judge_iterations_per_epoch",
                    "lesions.judge_patch_size"),
    "generate-lesions": ("seed", "device", "sampling", "lesions.dataset", "lesions.cases"),
    "inpaint-lesions": ("seed", "device", "sampling", "lesions"),
    "evaluate-lesions": ("device", "evaluation.medicalnet_weights"),
    "evaluate-inpainting": ("device",),
    "report-lesions": (*_PROVENANCE, "finetune", "lesions", "evaluation.medicalnet_weights"),
}
SECTIONS_KEY = "meddiff_sections_of"


def _command_base(key: str) -> tuple[str, str | None]:
    """("train", "baseline") of "train.baseline"; (key, None) otherwise."""
    command, _, variant = key.partition(".")
    if command not in COMMAND_SECTIONS:
        raise ConfigError(f"unknown command {command!r}; commands with settings: {sorted(COMMAND_SECTIONS)}")
    return command, variant or None


def _type_at(path: str):
    tp = Config
    for part in path.split("."):
        tp = typing.get_type_hints(tp)[part]
    return tp


def section_values(raw: dict, key: str) -> dict:
    """The plain (validated, defaults filled) values of the settings command ``key`` reads, by dotted path."""
    command, variant = _command_base(key)
    out = {}
    for path in COMMAND_SECTIONS[command]:
        if path == "variant":
            names = [v["name"] for v in raw["variants"]]
            if variant is None or variant == FOUNDATION_RUN:
                value = raw["variants"][-1]
            elif variant in names:
                value = raw["variants"][names.index(variant)]
            else:
                raise ConfigError(f"unknown variant {variant!r}; the config defines {names}")
        else:
            value = raw
            for part in path.split("."):
                value = value[part]
        out[path] = value
    if command == "train":
        out["training"] = _run_training(out["training"], variant)
    return out


def _run_training(training: dict, variant: str | None) -> dict:
    """The ``training`` section as one ``train`` job reads it: ``steps`` is that run's own length (the
    foundation run's is ``foundation_steps``) and ``foundation_steps`` is dropped, so that changing it reruns
    the foundation run only, not the Table 3 variants."""
    training = dict(training)
    if variant == FOUNDATION_RUN:
        if training["foundation_steps"] is None:
            raise ConfigError(f"'train.{FOUNDATION_RUN}' needs training.foundation_steps")
        training["steps"] = training["foundation_steps"]
    training["foundation_steps"] = None
    return training


class Sections:
    """The typed settings one command may read: ``sections["preprocess.windows"]``, ``sections["seed"]``.

    Asking for a setting the command does not declare in :data:`COMMAND_SECTIONS` is a programming error
    and raises ``KeyError`` naming the command, so a command cannot depend on what its rule does not rerun on.
    """

    def __init__(self, key: str, values: dict):
        self.key = key
        command, _ = _command_base(key)
        self._values = {
            path: _build(Variant if path == "variant" else _type_at(path), values[path], path)
            for path in COMMAND_SECTIONS[command]
        }

    def __getitem__(self, path: str):
        try:
            return self._values[path]
        except KeyError:
            raise KeyError(f"command {self.key!r} does not declare the setting {path!r} "
                           "(meddiff.config.COMMAND_SECTIONS)") from None

    def device(self) -> str:
        """``device`` with "auto" resolved (cuda when available)."""
        if self["device"] != "auto":
            return self["device"]
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def foundation_run(training_steps: int, foundation_steps: int | None, variants: list[Variant]) -> str:
    """Model folder (under ``models/``) of the foundation model: the last variant's own run, or
    :data:`FOUNDATION_RUN` when ``training.foundation_steps`` continues it beyond ``training.steps``."""
    longer = foundation_steps is not None and foundation_steps > training_steps
    return FOUNDATION_RUN if longer else variants[-1].name


def write_sections(path: str | Path, key: str, values: dict, log: str | Path | None = None) -> None:
    """Write the settings of command ``key`` (from :func:`section_values`) as YAML, atomically; say so in ``log``."""
    from meddiff.atomic import write_text

    write_text(path, yaml.safe_dump({SECTIONS_KEY: key, **values}, sort_keys=False))
    if log is not None:
        write_text(log, f"{path}: the settings of {key!r}: {', '.join(values)}\n")


def write_resolved_config(path: str | Path, raw: dict, log: str | Path | None = None) -> None:
    """Write the whole resolved config (validated, defaults filled) as YAML, atomically; say so in ``log``."""
    from meddiff.atomic import write_text

    write_text(path, yaml.safe_dump(raw, sort_keys=False))
    if log is not None:
        write_text(log, f"{path}: the resolved config of run {raw.get('run')!r}\n")


def load_sections(path: str | Path, key: str) -> Sections:
    """The settings command ``key`` reads, from a file :func:`write_sections` wrote for it (the workflow) or
    from a whole config file (by hand), which is validated first."""
    path = Path(path)
    raw = _read_yaml(path)
    if SECTIONS_KEY in raw:
        if raw[SECTIONS_KEY] != key:
            raise ConfigError(f"{path}: holds the settings of {raw[SECTIONS_KEY]!r}, not of {key!r}")
        return Sections(key, raw)
    try:
        config_from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return Sections(key, section_values(validate(dict(raw)), key))
