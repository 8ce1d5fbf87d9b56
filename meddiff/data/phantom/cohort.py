"""The embedded demo CT cohort: synthetic scans of head & neck, chest, abdomen and whole body, written as
NIfTI exactly like a downloaded dataset (image in HU, ground-truth anatomy, lesion masks).

A case is a random adult (:mod:`meddiff.data.phantom.patient`) drawn into a render grid organ by organ
(body wall, muscles, lungs, heart, vessels, abdominal organs, head, skeleton, lesions), then imaged by a
simple scanner model (:func:`meddiff.data.phantom.tissues.render_hu`). The scan geometry imitates real
scans: square field of view around the body, 1.5-2.5 mm pixels (whole body 2.5-3 mm), slices of 1.5, 2, 3
or 5 mm within a voxel budget (:data:`MAX_VOXELS`), and head-first or feet-first orientations with the x/y
axes in LPS or flipped, always with a correct direction matrix and origin. Deterministic given the seed.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from tqdm import tqdm

from meddiff.atomic import atomic_path, write_text
from meddiff.data.phantom.abdomen import paint_abdomen
from meddiff.data.phantom.body import paint_body_wall, paint_breasts, paint_muscles, paint_table
from meddiff.data.phantom.canvas import Canvas, Warp
from meddiff.data.phantom.head import paint_head
from meddiff.data.phantom.lesions import LESION_CLASSES, SUBTLE_TUMOURS, LiverTumours, paint_lesions
from meddiff.data.phantom.patient import Patient, sample_patient
from meddiff.data.phantom.skeleton import paint_pelvis, paint_spine, paint_thoracic_cage
from meddiff.data.phantom.thorax import (
    ChestLandmarks,
    chest_landmarks,
    paint_airways,
    paint_esophagus,
    paint_heart,
    paint_lungs,
)
from meddiff.data.phantom.tissues import TissueTable, centre_subslices, render_hu
from meddiff.data.phantom.vessels import paint_great_vessels
from meddiff.errors import ConfigError

__all__ = [
    "LESION_CLASSES",
    "PHANTOM_REGIONS",
    "PhantomCase",
    "ScanGeometry",
    "generate_case",
    "oriented_image",
    "write_cohort",
]

log = logging.getLogger(__name__)

PHANTOM_REGIONS = ("han", "chest", "abdomen", "wholebody")
THICKNESSES = (1.5, 2.0, 3.0, 5.0)
MAX_VOXELS = 5_000_000  # output volume
MAX_RENDER_VOXELS = 8_000_000  # render grid (thick slices are rendered in sub-slices)
FIXED_SPACING = {"han": (2.5, 3.0), "chest": (2.5, 3.0), "abdomen": (2.5, 3.0), "wholebody": (3.0, 5.0)}
"""(in-plane, slice) spacing in mm without spacing jitter; whole-body scans need coarser voxels to stay small."""
ORIENTATIONS = {"LPS": (1, 1, 1), "RAS": (-1, -1, 1), "LPI": (1, 1, -1), "RAI": (-1, -1, -1)}
"""Orientation code -> sign of the direction matrix diagonal (RAS: x/y flipped, *I: feet first)."""


@dataclass
class PhantomCase:
    image: sitk.Image  # int16 HU, 3D
    labels: sitk.Image  # uint8 label space (meddiff.labels), same geometry
    lesions: sitk.Image  # uint8 LESION_CLASSES, same geometry
    region: str
    info: dict[str, str] = field(default_factory=dict)  # contrast phase, orientation, noise, ... (for the TSV)


@dataclass(frozen=True)
class ScanGeometry:
    """Output grid (scanner frame = patient frame before the warp), in mm."""

    pixel: float
    thickness: float
    nx: int
    nz: int
    z_bottom: float  # centre of the most caudal slice
    centre_xy: tuple[float, float]
    substeps: int

    @property
    def render_z(self) -> np.ndarray:
        """Render-grid z: ``substeps`` sub-slices per slice plus the outer half profiles (see render_hu)."""
        m = self.substeps
        h = self.thickness / m
        n = m * self.nz + m - 1
        return self.z_bottom - (m - 1) * h + h * np.arange(n)

    @property
    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        c = (np.arange(self.nx) - (self.nx - 1) / 2) * self.pixel
        return c + self.centre_xy[0], c + self.centre_xy[1]


def _z_range(region: str, p: Patient, rng: np.random.Generator) -> tuple[float, float]:
    """(bottom, top) slice centres of a scan of ``region``, from anatomical landmarks like real protocols:
    head & neck vertex to T2-T4, chest C6-T1 to L1-L2, abdomen above the diaphragm to the pubic symphysis."""
    v = p.v
    if region == "han":
        return v(str(rng.choice(["T2", "T3", "T4"]))).z, p.z_vertex + rng.uniform(5, 20)
    if region == "chest":
        bottom = v(str(rng.choice(["L1", "L2"]))).z + rng.uniform(-10, 10)
        return bottom, v(str(rng.choice(["C6", "C7", "T1"]))).z + rng.uniform(0, 20)
    if region == "abdomen":
        return rng.uniform(-10, 30), p.dome_right + rng.uniform(15, 45)
    if region == "wholebody":
        return rng.uniform(-15, 10), p.z_vertex + rng.uniform(5, 15)
    raise ConfigError(f"unknown phantom region {region!r}; expected one of {PHANTOM_REGIONS}")


def _body_half_extent(p: Patient, z0: float, z1: float) -> float:
    z = np.linspace(z0, z1, 64)
    prof = p.profile(z)
    out = prof["fat"] + 2.0
    half = np.max([prof["a"] + out, prof["ba"] + out + np.abs(prof["cy"]), prof["bp"] + out + np.abs(prof["cy"])])
    if z1 > p.z_fm:
        half = max(half, 125.0)  # the head (its outline is drawn by the head module)
    return float(half)


def _scan_geometry(region: str, p: Patient, rng: np.random.Generator, jitter: bool) -> ScanGeometry:
    z0, z1 = _z_range(region, p, rng)
    fov = 2.0 * _body_half_extent(p, z0, z1) + (rng.uniform(25.0, 80.0) if jitter else 40.0)
    if jitter:
        pixel = rng.uniform(1.5, 2.5) if region != "wholebody" else rng.uniform(2.5, 3.0)
        choices = THICKNESSES if region != "wholebody" else (3.0, 5.0)
        t_idx = THICKNESSES.index(
            float(rng.choice(choices, p=None if region == "wholebody" else [0.15, 0.25, 0.35, 0.25]))
        )
    else:
        pixel, thickness = FIXED_SPACING[region]
        t_idx = THICKNESSES.index(thickness)
    while True:
        thickness = THICKNESSES[t_idx]
        nx = int(np.ceil(fov / pixel))
        nz = int(np.ceil((z1 - z0) / thickness)) + 1
        m = 2 if thickness >= 5.0 else 1  # 5 mm slices are rendered in 2.5 mm sub-slices
        fits = nx * nx * nz <= MAX_VOXELS and nx * nx * (m * nz + m - 1) <= MAX_RENDER_VOXELS
        if fits or not jitter:
            break
        # too many voxels: coarser pixels or thicker slices (either, as in clinical protocols)
        max_pixel = 3.0 if region == "wholebody" else 2.5
        thicker = t_idx + 1 < len(THICKNESSES)
        if pixel < max_pixel and (not thicker or rng.random() < 0.7):
            pixel = min(pixel + 0.25, max_pixel)
        elif thicker:
            t_idx += 1
        else:
            break
    centre = (rng.uniform(-12, 12), rng.uniform(-10, 20)) if jitter else (0.0, 5.0)
    return ScanGeometry(round(pixel, 4), thickness, nx, nz, z0, centre, m)


def _warp(rng: np.random.Generator, z: np.ndarray) -> Warp:
    """Patient pose: small rotation on the table plus smooth lateral (scoliosis) and AP (posture) sway."""

    def sway(amp: float) -> np.ndarray:
        return amp * np.sin(2 * np.pi * z / rng.uniform(350, 900) + rng.uniform(0, 2 * np.pi))

    return Warp(float(np.deg2rad(rng.normal(0.0, 2.0))), sway(rng.uniform(0, 6)), sway(rng.uniform(0, 8)))


def _draw_anatomy(canvas: Canvas, p: Patient) -> ChestLandmarks:
    """Paint every structure, in an order where later structures win overlaps (bones last)."""
    lm = chest_landmarks(p)
    paint_body_wall(canvas, p)
    paint_breasts(canvas, p)
    paint_muscles(canvas, p)
    paint_lungs(canvas, p, lm)
    paint_heart(canvas, p, lm)
    paint_airways(canvas, p, lm)
    paint_esophagus(canvas, p)
    paint_abdomen(canvas, p)
    paint_great_vessels(canvas, p, lm)
    paint_head(canvas, p)
    paint_pelvis(canvas, p)
    paint_spine(canvas, p)
    paint_thoracic_cage(canvas, p)
    return lm


def oriented_image(arr: np.ndarray, geo: ScanGeometry, orientation: str, offset: np.ndarray) -> sitk.Image:
    """(Z, Y, X) array on the LPS grid -> SimpleITK image written in ``orientation`` with matching
    direction and origin (physical = grid + ``offset``)."""
    sx, sy, sz = ORIENTATIONS[orientation]
    x, y = geo.xy
    z = geo.z_bottom + geo.thickness * np.arange(geo.nz)
    origin = [float((a[0] if s > 0 else a[-1]) + o) for a, s, o in zip((x, y, z), (sx, sy, sz), offset)]
    arr = arr[::sz, ::sy, ::sx]
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetSpacing((geo.pixel, geo.pixel, geo.thickness))
    img.SetOrigin(origin)
    img.SetDirection((sx, 0, 0, 0, sy, 0, 0, 0, sz))
    return img


def generate_case(
    region: str,
    seed: int,
    *,
    lesions: bool,
    spacing_jitter: bool = True,
    liver_tumours: LiverTumours = SUBTLE_TUMOURS,
) -> PhantomCase:
    """One synthetic CT of ``region`` ('han', 'chest', 'abdomen', 'wholebody'); identical for equal seeds.

    Returns the int16 HU image, the uint8 anatomy labels (TotalSegmentator ``total`` indices, body 118,
    air 0) and the uint8 lesion mask (:data:`LESION_CLASSES`) on one grid. Without ``spacing_jitter`` the
    spacing is :data:`FIXED_SPACING` and the orientation LPS.
    """
    if region not in PHANTOM_REGIONS:
        raise ConfigError(f"unknown phantom region {region!r}; expected one of {PHANTOM_REGIONS}")
    ss = np.random.SeedSequence([int(seed), PHANTOM_REGIONS.index(region)])
    rng_anat, rng_geo, rng_look, rng_lesion = (np.random.default_rng(s) for s in ss.spawn(4))
    p = sample_patient(rng_anat)
    geo = _scan_geometry(region, p, rng_geo, spacing_jitter)
    z_render = geo.render_z
    x, y = geo.xy
    canvas = Canvas(x, y, z_render, _warp(rng_geo, z_render))
    lm = _draw_anatomy(canvas, p)
    table = TissueTable(rng_look, p.phase, oral_contrast=p.oral_contrast)
    n_lesions = paint_lesions(canvas, p, lm, table, rng_lesion, liver_tumours) if lesions else 0
    if rng_geo.random() < 0.6:
        paint_table(canvas, rng_geo)
    # head protocols use more dose (less noise) for the subtle grey / white matter contrast
    low, high = (5.0, 12.0) if region == "han" else (10.0, 25.0)
    noise = float(rng_look.uniform(low, high) * (2.0 / geo.thickness) ** 0.25)
    fov_pad = rng_geo.random() < 0.4 if spacing_jitter else False
    hu = render_hu(
        canvas.tissue,
        table,
        rng_look,
        spacing_render=(geo.thickness / geo.substeps, geo.pixel, geo.pixel),
        substeps=geo.substeps,
        noise_std=noise,
        psf_sigma_mm=rng_look.uniform(0.6, 1.3),
        fov_radius_vox=geo.nx / 2 if fov_pad else None,
    )
    centre = centre_subslices(len(z_render), geo.substeps)
    orientation = str(rng_geo.choice(list(ORIENTATIONS), p=[0.4, 0.3, 0.15, 0.15])) if spacing_jitter else "LPS"
    offset = np.array([0.0, rng_geo.uniform(-40, 40), -rng_geo.uniform(300, 1400)]) if spacing_jitter else np.zeros(3)
    image = oriented_image(np.rint(hu).astype(np.int16), geo, orientation, offset)
    labels = oriented_image(canvas.label[centre], geo, orientation, offset)
    lesion_map = oriented_image(canvas.lesion[centre], geo, orientation, offset)
    info = {
        "contrast_phase": p.phase,
        "orientation": orientation,
        "slice_thickness": f"{geo.thickness:g}",
        "noise_std": f"{noise:.1f}",
        "lesions_drawn": str(n_lesions),
    }
    return PhantomCase(image, labels, lesion_map, region, info)


def _case_seed(seed: int, region: str, index: int) -> tuple[int, float]:
    """Per-case seed and the uniform draw that decides whether it gets lesions."""
    rng = np.random.default_rng([int(seed), PHANTOM_REGIONS.index(region), int(index)])
    return int(rng.integers(0, 2**31 - 1)), float(rng.random())


def _write_case(
    out_dir: Path, case_id: str, region: str, case_seed: int, lesions: bool, jitter: bool
) -> dict[str, str]:
    case = generate_case(region, case_seed, lesions=lesions, spacing_jitter=jitter)
    has = bool(sitk.GetArrayViewFromImage(case.lesions).any())
    files = [("images", case.image), ("labels", case.labels)] + ([("lesions", case.lesions)] if has else [])
    for sub, img in files:  # a healthy case has no lesion file, as in real lesion datasets
        with atomic_path(out_dir / sub / f"{case_id}.nii.gz") as tmp:
            sitk.WriteImage(img, str(tmp), useCompression=True)
    return {
        "case": case_id,
        "region": region,
        "has_lesions": str(has).lower(),
        "size": "x".join(map(str, case.image.GetSize())),
        "spacing": "x".join(f"{s:g}" for s in case.image.GetSpacing()),
        "orientation": case.info["orientation"],
        "contrast_phase": case.info["contrast_phase"],
    }


def write_cohort(
    out_dir: Path,
    cases_per_region: dict[str, int],
    *,
    lesion_fraction: float,
    spacing_jitter: bool,
    seed: int,
    workers: int = 1,
) -> list[str]:
    """Write out_dir/images/<case>.nii.gz (HU), out_dir/labels/<case>.nii.gz (ground-truth anatomy),
    out_dir/lesions/<case>.nii.gz (cases with lesions only) and out_dir/cohort.tsv (case, region, has_lesions, size, spacing,
    orientation, contrast_phase). Case ids: ``phantom_<region>_<NNN>`` (NNN from 000). Every file is written
    atomically; the cohort is deterministic given ``seed`` (also with ``workers`` > 1 processes); whether a
    case has lesions is drawn with probability ``lesion_fraction``. Returns the case ids."""
    out_dir = Path(out_dir)
    unknown = set(cases_per_region) - set(PHANTOM_REGIONS)
    if unknown:
        raise ConfigError(f"unknown phantom region(s) {sorted(unknown)}; expected {PHANTOM_REGIONS}")
    if not 0.0 <= lesion_fraction <= 1.0:
        raise ConfigError(f"phantom lesion_fraction must be in [0, 1], got {lesion_fraction}")
    jobs = []
    for region in PHANTOM_REGIONS:
        for i in range(int(cases_per_region.get(region, 0))):
            case_seed, u = _case_seed(seed, region, i)
            jobs.append((out_dir, f"phantom_{region}_{i:03d}", region, case_seed, u < lesion_fraction, spacing_jitter))
    rows = []
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_write_case, *job) for job in jobs]
            for fut in tqdm(futures, desc="phantom cohort", unit="case", disable=None):
                rows.append(fut.result())
                log.info("wrote %s (%s, %s)", rows[-1]["case"], rows[-1]["size"], rows[-1]["spacing"])
    else:
        for job in tqdm(jobs, desc="phantom cohort", unit="case", disable=None):
            rows.append(_write_case(*job))
            log.info("wrote %s (%s, %s)", rows[-1]["case"], rows[-1]["size"], rows[-1]["spacing"])
    table = pd.DataFrame(
        rows, columns=["case", "region", "has_lesions", "size", "spacing", "orientation", "contrast_phase"]
    )
    write_text(out_dir / "cohort.tsv", table.to_csv(sep="\t", index=False))
    return [r["case"] for r in rows]
