"""Training items: multi-level inputs drawn from the manifest's train crops, indexed so that the data order
is a pure function of the optimizer step.

Item ``i`` is built from ``np.random.default_rng([seed, i])`` alone (which crop, condition dropout, level,
box position), so any worker, any process and any resumed run produce the same item for the same index.
The training loop asks for the items of micro-batch ``m = step * grad_accumulation + micro`` on rank ``r``
of ``W`` processes: indices ``(m * W + r) * batch_size + b`` for b < batch_size (:func:`micro_batch_indices`).
Resume therefore needs no sampler state, and DDP ranks never share an item.

Crop choice: uniform over the manifest's train rows (each region crop of each case equally often), as an
epoch-based loader over the training set would; the cohort, not the loader, balances regions (the paper
caps CT-RATE at 1,000 chest cases for that, 4.1.1).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from meddiff.data.manifest import lesion_split
from meddiff.data.slice_interpolation import controlnet_condition
from meddiff.data.thick_slices import slab_average, slab_centres
from meddiff.diffusion.multilevel import LABEL_PAD_VALUE, read_box, resize_labels, sample_training_input
from meddiff.errors import DatasetMissingError
from meddiff.labels import NULL_LABEL, REGIONS


def resolve_cache_path(manifest: Path, value: str) -> Path:
    """A manifest path: absolute as is; relative paths are tried beside the manifest, then from the cwd."""
    path = Path(value)
    if path.is_absolute():
        return path
    beside = manifest.parent / path
    return beside if beside.exists() else path


# Task conditions c_t of ControlNet fine-tuning (eq. 4), one channel each: "sr" = the patch averaged over
# slabs of thick_factor slices along z and interpolated back (a thick-slice CT of the patch); "lesion" = the
# patch's lesion mask (train crops without a lesion are left out).
CONDITIONS = ("sr", "lesion")


def read_train_rows(manifest: Path, *, lesion_seed: int | None = None) -> pd.DataFrame:
    """The ``split == "train"`` rows of ``manifest.csv`` with resolved ``image``/``label`` paths; with a
    ``lesion_seed``, the crops of the lesion-train cases instead (:func:`meddiff.data.manifest.lesion_split`), with
    their ``lesion`` arrays resolved too.

    Raises:
        DatasetMissingError: the manifest, a column, any train row or one of its arrays is missing, or a
            region is not one of :data:`meddiff.labels.REGIONS`.
    """
    manifest = Path(manifest)
    try:
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DatasetMissingError(f"{manifest}: manifest not found; run the preprocess step first") from None
    missing = {"case", "region", "split", "image", "label"} - set(table.columns)
    if missing:
        raise DatasetMissingError(f"{manifest}: manifest lacks columns {sorted(missing)}")
    with_lesion = lesion_seed is not None
    if with_lesion:
        rows = lesion_split(table, lesion_seed) if "lesion" in table.columns else table.iloc[:0]
        rows = rows[rows["lesion_split"] == "train"]
    else:
        rows = table[table["split"] == "train"]
    rows = rows.reset_index(drop=True)
    if rows.empty:
        what = "with a lesion mask" if with_lesion else ""
        raise DatasetMissingError(f"{manifest}: no rows with split 'train' {what}; nothing to train on")
    bad = sorted(set(rows["region"]) - set(REGIONS))
    if bad:
        raise DatasetMissingError(f"{manifest}: unknown regions {bad}; expected {REGIONS}")
    for column in ("image", "label", "lesion") if with_lesion else ("image", "label"):
        rows[column] = [resolve_cache_path(manifest, v) for v in rows[column]]
        for path in rows[column]:
            if not path.exists():
                raise DatasetMissingError(f"{manifest}: {column} array {path} does not exist")
    return rows


class MultilevelTrainingDataset(Dataset):
    """Map-style dataset over the train crops of a manifest; item i depends only on (seed, i).

    Any non-negative integer is a valid index (the dataset has no length: training draws as many items as
    it needs). Arrays are opened with ``np.load(mmap_mode="r")`` on first use in each worker process.

    Items are dicts: ``x0`` (1, P, P, P) float32, ``anatomy`` (P, P, P) int64 (NULL_LABEL everywhere after
    condition dropout), ``coords`` (3, P, P, P) float32, ``region`` () int64 index into REGIONS,
    ``level`` () int64, and with a ``condition`` (:data:`CONDITIONS`) ``control`` (1, P, P, P) float32.
    """

    def __init__(
        self,
        manifest: Path,
        *,
        patch_size: Sequence[int],
        multilevel: bool,
        level_probabilities: Sequence[float],
        condition_dropout: float,
        seed: int,
        condition: str | None = None,
        thick_factor: int | None = None,
    ):
        if condition not in (None, *CONDITIONS) or (condition == "sr") != (thick_factor is not None):
            raise ValueError(f"condition must be None or one of {CONDITIONS} (thick_factor for 'sr' only), "
                             f"got {condition!r}, {thick_factor!r}")  # fmt: skip
        self.manifest = Path(manifest)
        rows = read_train_rows(self.manifest, lesion_seed=seed if condition == "lesion" else None)
        self.condition, self.thick_factor = condition, thick_factor
        self.lesions = [str(p) for p in rows["lesion"]] if condition == "lesion" else []
        self.images = [str(p) for p in rows["image"]]
        self.labels = [str(p) for p in rows["label"]]
        self.regions = [REGIONS.index(r) for r in rows["region"]]
        self.cases = list(rows["case"])
        self.patch_size = tuple(int(p) for p in patch_size)
        self.multilevel = multilevel
        self.level_probabilities = tuple(float(p) for p in level_probabilities)
        self.condition_dropout = float(condition_dropout)
        self.seed = int(seed)
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def num_crops(self) -> int:
        return len(self.images)

    def _open(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        if row not in self._arrays:
            try:
                image = np.load(self.images[row], mmap_mode="r")
                label = np.load(self.labels[row], mmap_mode="r")
            except (OSError, ValueError) as err:
                raise DatasetMissingError(f"{self.images[row]}: cannot open cached crop: {err}") from None
            if image.shape != label.shape or image.ndim != 3:
                raise DatasetMissingError(
                    f"{self.images[row]}: image {image.shape} and label {label.shape} must be 3D of one shape"
                )
            self._arrays[row] = (image, label)
        return self._arrays[row]

    def __getstate__(self) -> dict:
        # Workers get the dataset pickled: send paths, never opened memmaps.
        state = dict(self.__dict__)
        state["_arrays"] = {}
        return state

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index < 0:
            raise IndexError(f"item index must be >= 0, got {index}")
        rng = np.random.default_rng([self.seed, int(index)])
        row = int(rng.integers(self.num_crops))
        drop_condition = bool(rng.random() < self.condition_dropout)
        image, label = self._open(row)
        sample = sample_training_input(
            image,
            label,
            patch_size=self.patch_size,
            multilevel=self.multilevel,
            level_probabilities=self.level_probabilities,
            rng=rng,
        )
        anatomy = torch.full_like(sample.anatomy, NULL_LABEL) if drop_condition else sample.anatomy
        item = {
            "x0": sample.x0,
            "anatomy": anatomy,
            "coords": sample.coords,
            "region": torch.tensor(self.regions[row], dtype=torch.int64),
            "level": torch.tensor(sample.level, dtype=torch.int64),
        }
        if self.condition == "sr":
            thin = sample.x0[0].numpy()
            thick = slab_average(thin, self.thick_factor)
            centres = slab_centres(self.thick_factor, thick.shape[0])
            item["control"] = torch.from_numpy(controlnet_condition(thick, centres, thin.shape[0]))[None]
        elif self.condition == "lesion":
            lesion = np.load(self.lesions[row], mmap_mode="r")
            if lesion.shape != image.shape:
                raise DatasetMissingError(f"{self.lesions[row]}: lesion {lesion.shape} and image {image.shape} differ")
            block = read_box(lesion, sample.start, sample.size, LABEL_PAD_VALUE)
            item["control"] = (resize_labels(block, self.patch_size) > 0).float()[None]
        return item


def micro_batch_indices(
    step: int, micro: int, *, grad_accumulation: int, batch_size: int, world_size: int, rank: int
) -> list[int]:
    """Item indices of micro-batch ``micro`` of optimizer step ``step`` (0-based) on ``rank``."""
    global_micro = (step * grad_accumulation + micro) * world_size + rank
    return [global_micro * batch_size + b for b in range(batch_size)]


class StepBatchSampler(Sampler[list[int]]):
    """Yields the micro-batches of optimizer steps ``first_step .. last_step - 1`` in order (a batch sampler
    for :class:`torch.utils.data.DataLoader`); restarting at a resumed step needs nothing but that step."""

    def __init__(
        self, first_step: int, last_step: int, *, grad_accumulation: int, batch_size: int, world_size: int, rank: int
    ):
        self.first_step, self.last_step = first_step, last_step
        self.kwargs = dict(grad_accumulation=grad_accumulation, batch_size=batch_size, world_size=world_size, rank=rank)
        self.grad_accumulation = grad_accumulation

    def __len__(self) -> int:
        return max(0, self.last_step - self.first_step) * self.grad_accumulation

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.first_step, self.last_step):
            for micro in range(self.grad_accumulation):
                yield micro_batch_indices(step, micro, **self.kwargs)
