"""Lesions of the phantom, each with its own mask value: hypo- or hyperdense liver tumours, solid lung
nodules and enlarged lymph nodes (mediastinal, para-aortic, cervical).

Lesions are placed on the finished anatomy: a lobulated ellipsoid is accepted only where nearly all of it
lies in its host (liver, lung lobes, or unlabelled body soft tissue for nodes) and is clipped to the host,
so every lesion voxel keeps its organ label in the anatomy map while the image shows the lesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meddiff.data.phantom.canvas import Blob, Canvas
from meddiff.data.phantom.patient import Patient
from meddiff.data.phantom.thorax import ChestLandmarks, lung_labels
from meddiff.data.phantom.tissues import Tissue, TissueTable
from meddiff.labels import BODY, class_index

LESION_CLASSES: dict[int, str] = {1: "liver_tumour", 2: "lung_nodule", 3: "lymph_node"}


@dataclass(frozen=True)
class LiverTumours:
    """How liver tumours are drawn: radius range (mm), and the HU offset from the liver of hypodense
    (probability ``p_hypo``) and hyperdense ones."""

    radius_mm: tuple[float, float] = (4.0, 15.0)
    hypo_delta_hu: tuple[float, float] = (-30.0, -10.0)
    hyper_delta_hu: tuple[float, float] = (10.0, 20.0)
    p_hypo: float = 0.75


SUBTLE_TUMOURS = LiverTumours()
"""The pre-training cohort's tumours: small and faint, like many incidental lesions."""
CONSPICUOUS_TUMOURS = LiverTumours(radius_mm=(12.0, 25.0), hypo_delta_hu=(-70.0, -40.0), hyper_delta_hu=(30.0, 50.0))
"""The demo anomaly cases' tumours: at the demo's 6 mm voxels a subtle tumour is 1-5 voxels across with a
contrast below the liver's own texture (std ~25 HU there), so no detector could find it; these are 4-8 voxels
across and clearly hypo- or hyperdense, as the larger LiTS tumours in BMAD's liver set."""


def _grid_point(canvas: Canvas, k: int, j: int, i: int) -> np.ndarray:
    """Patient-frame position of voxel (k, j, i) of the render grid."""
    x, y = float(canvas.x[i]), float(canvas.y[j])
    ux = canvas.cos * x - canvas.sin * y + float(canvas.warp.dx[k])
    uy = canvas.sin * x + canvas.cos * y + float(canvas.warp.dy[k])
    return np.array([ux, uy, float(canvas.z[k])])


def _place(
    canvas: Canvas,
    rng: np.random.Generator,
    centres,
    radii,
    hosts: list[int],
    cls: int,
    tissue: int,
    *,
    min_inside: float,
    amp: float,
    tries: int = 25,
) -> bool:
    """Try random centres from ``centres()`` until a blob with ``radii`` lies >= ``min_inside`` in ``hosts``."""
    allowed = np.zeros(256, bool)
    allowed[hosts] = True
    for _ in range(tries):
        centre = centres()
        if centre is None:
            return False
        blob = Blob.random(rng, centre, radii, None, amp)
        reg = canvas.region(*blob.bounds())
        if reg is None:
            continue
        shape = blob.rho(reg) < 1.0
        host = shape & allowed[reg.label] & (reg.lesion == 0)
        n = int(shape.sum())
        if n and host.sum() >= min_inside * n:
            reg.paint(host, None, tissue, lesion=cls)
            return True
    return False


def paint_lesions(
    canvas: Canvas,
    p: Patient,
    lm: ChestLandmarks,
    table: TissueTable,
    rng: np.random.Generator,
    liver_tumours: LiverTumours = SUBTLE_TUMOURS,
) -> int:
    """Paint 1-3 lesions of each kind whose host organ is in the scan; returns how many were placed."""
    idx = class_index()
    placed = 0
    slot = 0

    def organ_voxel(labels: list[int]):
        where = np.flatnonzero(np.isin(canvas.label, labels).ravel())
        if where.size == 0:
            return lambda: None
        return lambda: _grid_point(canvas, *np.unravel_index(where[rng.integers(where.size)], canvas.shape))

    liver_mean = float(table.mean[Tissue.LIVER])
    centre = organ_voxel([idx["liver"]])
    for _ in range(int(rng.integers(1, 4))):
        hypo = rng.random() < liver_tumours.p_hypo
        delta = rng.uniform(*(liver_tumours.hypo_delta_hu if hypo else liver_tumours.hyper_delta_hu))
        r = rng.uniform(*liver_tumours.radius_mm)
        tissue = table.set_lesion(slot, liver_mean + delta, fine=rng.uniform(4, 12))
        if _place(
            canvas,
            rng,
            centre,
            (r, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2)),
            [idx["liver"]],
            1,
            tissue,
            min_inside=0.9,
            amp=0.1,
        ):
            placed, slot = placed + 1, slot + 1
    centre = organ_voxel(lung_labels())
    for _ in range(int(rng.integers(1, 4))):
        r = rng.uniform(2.0, 7.5)
        tissue = table.set_lesion(slot, rng.uniform(0, 50), fine=5.0)
        if _place(canvas, rng, centre, (r, r, r), lung_labels(), 2, tissue, min_inside=0.95, amp=0.08):
            placed, slot = placed + 1, slot + 1
    anchors = _node_anchors(p, lm)
    z0, z1 = canvas.z_range
    anchors = [a for a in anchors if z0 + 5 < a[2] < z1 - 5]
    node_hu = float(table.mean[Tissue.LYMPH])
    for _ in range(int(rng.integers(1, 4)) if anchors else 0):
        r = rng.uniform(4.0, 10.0)

        def near_anchor():
            return anchors[rng.integers(len(anchors))] + rng.normal(scale=6.0, size=3)

        tissue = table.set_lesion(slot, node_hu + rng.uniform(-5, 10), fine=4.0)
        if _place(
            canvas,
            rng,
            near_anchor,
            (r, r * 0.8, r * rng.uniform(1.1, 1.6)),
            [BODY],
            3,
            tissue,
            min_inside=0.8,
            amp=0.05,
        ):
            placed, slot = placed + 1, slot + 1
    return placed


def _node_anchors(p: Patient, lm: ChestLandmarks) -> list[np.ndarray]:
    """Typical lymph-node stations: cervical (levels II-IV), paratracheal, subcarinal, aorto-pulmonary,
    hilar, retrocrural and para-aortic."""
    v, w = p.v, p.width
    out = []
    for s in (1.0, -1.0):
        out += [np.array([s * 44 * w, 2.0, v(n).z]) for n in ("C2", "C4", "C6")]
        out.append(np.array([s * 28 * w, v("L2").y - v("L2").b - 8.0, v("L2").z]))
        out.append(lm.carina + (s * 38 * w, 4.0, -20.0))
    out += [
        lm.carina + (-18.0, -12.0, 25.0),
        lm.carina + (0.0, 12.0, -16.0),
        lm.carina + (22.0, -20.0, 18.0),
        np.array([-6.0, v("T12").y - v("T12").b - 6.0, v("T12").z]),
        np.array([-14.0, v("L3").y - v("L3").b - 6.0, v("L3").z]),
    ]
    return out
