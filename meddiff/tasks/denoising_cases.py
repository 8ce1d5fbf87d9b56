"""Cases of the denoising task (paper 4.3.2): (full-dose, low-dose) pairs in HU on one grid.

Two sources:

- **Mayo 2016** (paper scale): the real full / quarter-dose series (:mod:`meddiff.data.mayo`), reoriented to
  LPS and resampled to the model's spacing (``preprocess.spacing_mm``) with the same interpolation for both.
- **Simulated** (demo, and any cohort without low-dose scans): a preprocessed region crop of the training
  cache is brought back to HU and put through :func:`meddiff.tasks.lowdose.simulate_pair`.

HU of a simulated case: the cache stores the crop *windowed and clipped* to the region window (abdomen
[-120, 240] HU, so air, lung and bone are lost), which would give a phantom without its dense and empty
structures. The crop's ``meta["source_image"]`` is therefore re-read and resampled onto the crop grid
(origin, spacing, identity LPS direction from the meta; the preprocessing's interpolation), which is
exactly the HU volume the crop was made from, before the window. Only when the source image is gone is
the cache mapped back with ``unit_to_hu`` (clipped HU; logged as a warning).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from meddiff.config import DenoisingConfig, Window
from meddiff.data.intensity import unit_to_hu
from meddiff.data.io import read_image
from meddiff.data.mayo import MayoPair, list_mayo_pairs, load_pair
from meddiff.data.preprocess import AIR_HU, crop_to_sitk, load_crop
from meddiff.errors import ConfigError, GeometryError
from meddiff.tasks.lowdose import simulate_pair

log = logging.getLogger(__name__)

DENOISING_REGIONS: tuple[str, ...] = ("chest", "abdomen")
"""Regions of the Mayo 2016 scans (paper 4.1.1); the demo simulates low-dose crops of these regions."""

_INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}


@dataclass(frozen=True)
class DenoisingCase:
    """One (full-dose, low-dose) pair.

    Attributes:
        case: case / patient identifier.
        region: "chest" or "abdomen" (region condition and model window).
        split: "train" / "val" / "test" (only non-test cases calibrate sigma_n).
        full_hu, low_hu: (Z, Y, X) float32 volumes in HU on the same grid.
        anatomy: (Z, Y, X) labels (meddiff.labels space) or None (no anatomy condition: NULL_LABEL).
        spacing_mm: (x, y, z) voxel size.
        source: where the pair came from (for the table).
    """

    case: str
    region: str
    split: str
    full_hu: np.ndarray
    low_hu: np.ndarray
    anatomy: np.ndarray | None
    spacing_mm: tuple[float, float, float]
    source: str

    def __post_init__(self) -> None:
        shapes = {"full-dose": self.full_hu.shape, "low-dose": self.low_hu.shape}
        if self.anatomy is not None:
            shapes["anatomy"] = self.anatomy.shape
        if len(set(shapes.values())) != 1 or self.full_hu.ndim != 3:
            raise GeometryError(f"{self.source}: denoising pair {self.case!r} is not on one (Z, Y, X) grid: {shapes}")

    def body_mask(self, body_threshold_hu: float = -500.0) -> np.ndarray:
        """(Z, Y, X) bool: anatomy label > 0, or full-dose HU above ``body_threshold_hu`` without anatomy."""
        if self.anatomy is not None:
            return np.asarray(self.anatomy) > 0
        return self.full_hu > body_threshold_hu


def crop_hu(case_dir: str | Path, region: str, interpolation: str = "linear") -> tuple[np.ndarray, np.ndarray, dict]:
    """HU volume of a cached region crop, unclipped when possible (see the module docstring).

    Returns:
        (hu (Z, Y, X) float32, label (Z, Y, X) uint8, meta dict).
    """
    if interpolation not in _INTERPOLATORS:
        raise ConfigError(
            f"preprocess.image_interpolation must be one of {sorted(_INTERPOLATORS)}, got {interpolation!r}"
        )
    unit, label, meta = load_crop(case_dir, region)
    source = meta.get("source_image")
    if source and Path(source).exists():
        reference = crop_to_sitk(np.zeros(meta["shape"], dtype=np.float32), meta, hu=False)
        image = read_image(source)
        resampled = sitk.Resample(
            image, reference, sitk.Transform(), _INTERPOLATORS[interpolation], AIR_HU, sitk.sitkFloat32
        )
        hu = sitk.GetArrayFromImage(resampled)
    else:
        log.warning(
            "%s/%s: source image %s not found; using the cached crop mapped back to HU (clipped to the window %s)",
            case_dir,
            region,
            source,
            meta["window"],
        )
        hu = unit_to_hu(np.asarray(unit), Window(**meta["window"])).astype(np.float32)
    return hu, np.asarray(label), meta


def simulated_case(
    case_dir: str | Path,
    region: str,
    *,
    split: str,
    cfg: DenoisingConfig,
    interpolation: str,
    seed: int,
) -> DenoisingCase:
    """A simulated (full, low)-dose pair from a cached crop (:func:`crop_hu` + :func:`simulate_pair`).

    The in-plane pixel size is the crop's x spacing (preprocessing resamples to square pixels).
    """
    hu, label, meta = crop_hu(case_dir, region, interpolation)
    sx, sy, sz = (float(s) for s in meta["spacing_mm"])
    if abs(sx - sy) > 1e-6:
        raise GeometryError(
            f"{case_dir}/{region}: the low-dose simulator needs square pixels, got spacing {meta['spacing_mm']}"
        )
    full, low = simulate_pair(hu, sx, incident_photons=cfg.incident_photons, dose_fraction=cfg.dose_fraction, seed=seed)
    return DenoisingCase(
        case=str(meta["case"]),
        region=region,
        split=split,
        full_hu=full,
        low_hu=low,
        anatomy=label,
        spacing_mm=(sx, sy, sz),
        source=f"simulated {cfg.dose_fraction:g} dose from {case_dir}",
    )


def simulated_cases_from_manifest(
    manifest: pd.DataFrame,
    cfg: DenoisingConfig,
    *,
    interpolation: str,
    seed: int,
    calibration_per_region: int = 3,
) -> tuple[list[DenoisingCase], list[DenoisingCase]]:
    """(test cases, calibration cases) simulated from the chest / abdomen crops of a manifest.

    Test cases: the ``split == "test"`` rows (the first ``cfg.cases`` of them when ``cfg.cases > 0``).
    Calibration cases (sigma_n, paper 4.3.2 "estimated in the non-test cases"): up to
    ``calibration_per_region`` non-test rows per region. Every pair gets its own seed (``seed`` + row number).
    """
    rows = manifest[manifest["region"].isin(DENOISING_REGIONS)].reset_index(drop=True)
    test = rows[rows["split"] == "test"]
    if cfg.cases > 0:
        test = test.head(cfg.cases)
    calib = rows[rows["split"] != "test"].groupby("region", sort=False).head(calibration_per_region)

    def build(df: pd.DataFrame) -> list[DenoisingCase]:
        return [
            simulated_case(
                Path(r.meta).parent, r.region, split=r.split, cfg=cfg, interpolation=interpolation, seed=seed + int(i)
            )
            for i, r in zip(df.index, df.itertuples())
        ]

    return build(test), build(calib)


def _resample_to_spacing(image: sitk.Image, spacing_mm: Sequence[float], interpolation: str) -> sitk.Image:
    """LPS-reoriented ``image`` resampled to ``spacing_mm`` (x, y, z) over the same physical extent."""
    image = sitk.DICOMOrient(image, "LPS")
    size = [max(1, int(round(n * s / t))) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing_mm)]
    return sitk.Resample(
        image,
        size,
        sitk.Transform(),
        _INTERPOLATORS[interpolation],
        image.GetOrigin(),
        tuple(float(s) for s in spacing_mm),
        image.GetDirection(),
        AIR_HU,
        sitk.sitkFloat32,
    )


def mayo_case(
    pair: MayoPair,
    *,
    split: str,
    spacing_mm: Sequence[float],
    interpolation: str = "linear",
    region: str = "abdomen",
    anatomy_path: str | Path | None = None,
) -> DenoisingCase:
    """A Mayo 2016 patient as a denoising case, both series resampled identically to ``spacing_mm``.

    Args:
        pair: the patient's series folders.
        split: "test" or a non-test split (calibration).
        spacing_mm: (x, y, z) spacing of the model (``preprocess.spacing_mm``).
        region: region condition; the Mayo scans are abdominal CT (some reach the lower chest).
        anatomy_path: optional label map (meddiff label space) on the full-dose grid; None = no anatomy
            condition (NULL_LABEL everywhere).
    """
    full, low = load_pair(pair)
    full_r = _resample_to_spacing(full, spacing_mm, interpolation)
    low_r = _resample_to_spacing(low, spacing_mm, interpolation)
    anatomy = None
    if anatomy_path is not None:
        label = sitk.DICOMOrient(read_image(anatomy_path), "LPS")
        label = sitk.Resample(label, full_r, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        anatomy = sitk.GetArrayFromImage(label)
    return DenoisingCase(
        case=pair.patient,
        region=region,
        split=split,
        full_hu=sitk.GetArrayFromImage(full_r),
        low_hu=sitk.GetArrayFromImage(low_r),
        anatomy=anatomy,
        spacing_mm=tuple(float(s) for s in full_r.GetSpacing()),
        source=f"Mayo 2016 {pair.full.parent}",
    )


def mayo_cases(
    folder: str | Path,
    *,
    test_patients: Sequence[str],
    spacing_mm: Sequence[float],
    interpolation: str = "linear",
    region: str = "abdomen",
    cases: int = 0,
    anatomy_dir: str | Path | None = None,
) -> tuple[Iterator[DenoisingCase], Iterator[DenoisingCase]]:
    """(test cases, calibration cases) of a Mayo 2016 folder, each a lazy iterator (one patient in memory).

    Args:
        folder: the AAPM layout of :mod:`meddiff.data.mayo`.
        test_patients: patient folders evaluated (the others calibrate sigma_n).
        cases: evaluate only the first ``cases`` test patients (0 = all).
        anatomy_dir: optional ``<anatomy_dir>/<patient>.nii.gz`` label maps on the full-dose grid.

    Raises:
        DatasetMissingError: no Mayo data in ``folder``.
        ConfigError: a test patient is not in ``folder``.
    """
    pairs = list_mayo_pairs(folder)
    names = [p.patient for p in pairs]
    unknown = sorted(set(test_patients) - set(names))
    if unknown or not test_patients:
        raise ConfigError(
            f"{folder}: Mayo test patients {unknown or list(test_patients)} not found; available: {names}"
        )
    test = [p for p in pairs if p.patient in set(test_patients)]
    test = test[:cases] if cases > 0 else test
    calib = [p for p in pairs if p.patient not in set(test_patients)]

    def build(chosen: list[MayoPair], split: str) -> Iterator[DenoisingCase]:
        for pair in chosen:
            label = Path(anatomy_dir) / f"{pair.patient}.nii.gz" if anatomy_dir else None
            yield mayo_case(
                pair, split=split, spacing_mm=spacing_mm, interpolation=interpolation, region=region,
                anatomy_path=label if label is not None and label.exists() else None,
            )  # fmt: skip

    return build(test, "test"), build(calib, "train")
