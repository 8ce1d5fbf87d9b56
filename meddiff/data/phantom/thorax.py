"""Chest contents of the phantom: the five lung lobes with bronchial and vascular trees, trachea and main
bronchi, esophagus, mediastinal fat and the heart (myocardium, chambers, epicardial fat, left atrial
appendage)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meddiff.data.phantom.canvas import (
    Blob,
    Canvas,
    branching_tree,
    frame_from_axis,
    label_of,
    paint_blob,
    paint_hollow_tube,
    paint_tree,
    smooth_path,
)
from meddiff.data.phantom.patient import Patient
from meddiff.data.phantom.tissues import Tissue as T
from meddiff.data.phantom.tissues import smooth_noise

BODY = 118
LOBES = (
    "lung_upper_lobe_left",
    "lung_lower_lobe_left",
    "lung_upper_lobe_right",
    "lung_middle_lobe_right",
    "lung_lower_lobe_right",
)


def lung_labels() -> list[int]:
    return [label_of(n) for n in LOBES]


@dataclass(frozen=True)
class ChestLandmarks:
    heart: np.ndarray  # heart centre (mm)
    heart_axis: np.ndarray  # base -> apex direction
    heart_radii: np.ndarray
    carina: np.ndarray
    hilum_left: np.ndarray
    hilum_right: np.ndarray
    apex_z: float


def chest_landmarks(p: Patient) -> ChestLandmarks:
    rng, w = p.rng, p.width
    v = p.v
    s = p.organ_scale
    heart = np.array([18.0 * w + rng.uniform(-8, 8), -22.0 + rng.uniform(-8, 8), p.dome_left + 46.0 * s])
    axis = np.array([0.6 + rng.uniform(-0.15, 0.15), -0.6, -0.45 + rng.uniform(-0.15, 0.15)])
    carina_z = v("T5").z_top + rng.uniform(-8, 8)
    carina = np.array([0.0, float(p.spine_y(carina_z)) - 35.0, carina_z])
    return ChestLandmarks(
        heart=heart,
        heart_axis=axis / np.linalg.norm(axis),
        heart_radii=np.array([62.0, 46.0, 44.0]) * s * rng.uniform(0.92, 1.1),
        carina=carina,
        hilum_left=carina + (55.0 * w, 6.0, -22.0),
        hilum_right=carina + (-52.0 * w, 4.0, -16.0),
        apex_z=v("T1").z_top + rng.uniform(15, 28),
    )


def paint_lungs(canvas: Canvas, p: Patient, lm: ChestLandmarks) -> None:
    """Lungs fill the rib cage above the diaphragm, beside the mediastinum and spine; oblique (both) and
    horizontal (right) fissures split them into TotalSegmentator's five lobes."""
    rng, w = p.rng, p.width
    v = p.v
    z_lo, z_hi = p.dome_right - 140.0, lm.apex_z
    reg = canvas.region((-180.0, -140.0, z_lo), (180.0, 140.0, z_hi))
    if reg is None:
        return
    c = p.cage(reg.z1d)
    gap = 7.0
    x, y, z = reg.ux, reg.uy, reg.uz
    a = (c["A"] - gap)[:, None, None]
    b = np.where(y < 0, (c["Ba"] - gap)[:, None, None], (c["Bp"] - gap)[:, None, None])
    inside = (x / a) ** 2 + (y / b) ** 2 < 1.0
    inside &= z > p.diaphragm(x, y) + 3.0
    sy = p.spine_y(reg.z1d)[:, None, None]
    inside &= ((x / 30.0) ** 2 + ((y - sy) / 28.0) ** 2 > 1.0) & ~((np.abs(x) < 22.0) & (y > sy))  # spine
    inside &= np.abs(x + 2.0) > 4.0 + 28.0 * np.clip((y - sy + 90.0) / 70.0, 0.0, 1.0) ** 1.5  # mediastinum
    z_t2 = v("T2").z
    for s in (1.0, -1.0):  # rounded apices
        r_apex = 60.0 * w * np.sqrt(np.clip((z_hi - z) / (z_hi - z_t2), 0.0, 1.0))
        cap = ((x - s * 48.0 * w) ** 2 + (y - 12.0) ** 2 < r_apex**2) | (z < z_t2)
        inside &= cap | (np.sign(x) != s)
    y_h = lm.hilum_left[1]
    z_oblique = v("T4").z + (y - 80.0) * rng.uniform(0.8, 1.0) + rng.uniform(-10, 10)
    z_horizontal = v("T7").z_top + rng.uniform(-10, 10)
    lower = z < z_oblique
    left, right = inside & (x > 0), inside & (x <= 0)
    reg.paint(left & ~lower, label_of("lung_upper_lobe_left"), T.LUNG)
    reg.paint(left & lower, label_of("lung_lower_lobe_left"), T.LUNG)
    reg.paint(right & lower, label_of("lung_lower_lobe_right"), T.LUNG)
    reg.paint(right & ~lower & (z < z_horizontal) & (y < y_h + 10), label_of("lung_middle_lobe_right"), T.LUNG)
    reg.paint(right & ~lower & ((z >= z_horizontal) | (y >= y_h + 10)), label_of("lung_upper_lobe_right"), T.LUNG)
    lungs = lung_labels()
    # peripheral vessels: where two smooth random fields are both near zero lies a network of thin random
    # curves (the intersection of two level surfaces); thicker towards the hila, thinning at the pleura
    sp = (float(np.diff(canvas.z[:2])[0]), float(canvas.y[1] - canvas.y[0]), float(canvas.x[1] - canvas.x[0]))
    sigma = tuple(4.5 / s for s in sp)
    n1 = smooth_noise(rng, reg.shape, sigma, 3)
    n2 = smooth_noise(rng, reg.shape, sigma, 3)
    depth = 1.0 - np.sqrt((x / a) ** 2 + (y / b) ** 2)  # 0 at the pleura, 1 on the axis
    eps = np.float32(rng.uniform(0.14, 0.2)) * (0.5 + np.clip(depth * 2.5, 0.0, 1.0))
    reg.paint((np.abs(n1) < eps) & (np.abs(n2) < eps), None, T.LUNG_VESSEL, only=lungs)
    del n1, n2
    # central vessels and bronchi branching from the hila
    for hilum, s in ((lm.hilum_left, 1.0), (lm.hilum_right, -1.0)):
        dirs = [
            (0.35 * s, -0.25, 1.0),
            (0.45 * s, 0.6, -1.0),
            (0.6 * s, -0.9, -0.5),
            (0.9 * s, 0.2, 0.1),
            (0.4 * s, 0.8, 0.5),
        ]
        for d in dirs:
            tree = branching_tree(rng, hilum, d, rng.uniform(30, 40), 6.0, 5, spread=34.0, shrink=0.74, min_radius=0.8)
            paint_tree(canvas, tree, None, T.LUNG_VESSEL, only=lungs)
        for d in dirs[:3]:
            tree = branching_tree(rng, hilum, d, 30.0, 4.5, 2, spread=28.0, shrink=0.72, min_radius=1.2)
            paint_tree(canvas, tree, None, T.AIRWAY_WALL, only=lungs, grow=1.0)
            paint_tree(canvas, tree, None, T.AIR, only=lungs)


def paint_airways(canvas: Canvas, p: Patient, lm: ChestLandmarks) -> None:
    """Trachea (C7 to the carina, label ``trachea``) and the main bronchi to the hila (air in the body)."""
    rng, v = p.rng, p.v
    r = 9.0 * rng.uniform(0.8, 1.15)
    pts = [(0.0, -20.0, v("C7").z_bot), (-2.0, float(p.spine_y(v("T2").z)) - 45.0, v("T2").z), lm.carina]
    path, rad = smooth_path(pts, [r, r, r * 0.95], 4.0)
    paint_hollow_tube(canvas, path, rad, 2.0, label_of("trachea"), T.AIRWAY_WALL, T.AIR)
    for hilum, rb in ((lm.hilum_left, 6.5), (lm.hilum_right, 7.0)):
        mid = 0.5 * (lm.carina + hilum) + (0.0, 0.0, 4.0)
        path, rad = smooth_path([lm.carina, mid, hilum], [rb, rb, rb - 1.0], 3.0)
        paint_hollow_tube(canvas, path, rad + 1.5, 1.5, BODY, T.AIRWAY_WALL, T.AIR, only=[BODY, *lung_labels()])


def paint_esophagus(canvas: Canvas, p: Patient) -> None:
    """Esophagus from C6 behind the trachea, left of the spine, through the hiatus to the cardia."""
    rng, v, w = p.rng, p.v, p.width

    def front(name: str, gap: float) -> float:
        return v(name).y - v(name).b - gap

    pts = [
        (0.0, front("C6", 9.0), v("C6").z),
        (3.0, front("T2", 10.0), v("T2").z),
        (6.0, front("T6", 14.0), v("T6").z),
        (14.0, front("T9", 24.0), v("T9").z),
        (28.0 * w, front("T11", 45.0), v("T11").z_top),
        (45.0 * w, -12.0, p.dome_left - 28.0),
    ]
    path, rad = smooth_path(pts, [7.0, 8.0, 8.5, 9.0, 9.5, 10.0], 4.0)
    lumen = T.AIR if rng.random() < 0.4 else T.BOWEL_WALL
    paint_hollow_tube(canvas, path, rad, 5.5, label_of("esophagus"), T.BOWEL_WALL, lumen)


def paint_heart(canvas: Canvas, p: Patient, lm: ChestLandmarks) -> None:
    """Heart on the diaphragm: epicardial fat, myocardium, chambers (left blood / right blood), the
    mediastinal fat above it, and the left atrial appendage."""
    rng = p.rng
    heart = label_of("heart")
    h = lm.heart
    rot = frame_from_axis(lm.heart_axis, twist=rng.uniform(-15, 15))
    outer = Blob.random(rng, h, lm.heart_radii, rot, amp=0.04)
    atria = [(h + (4.0, 40.0, 22.0), (28, 17, 20), T.BLOOD_LEFT), (h + (-44.0, 12.0, 8.0), (22, 22, 28), T.BLOOD_RIGHT)]

    def above_diaphragm(reg):
        return reg.uz > p.diaphragm(reg.ux, reg.uy) + 2.0

    lungs = lung_labels()
    mediastinum = Blob.random(rng, (-4.0, -8.0, p.v("T4").z), (34, 52, 75), amp=0.06)
    paint_blob(canvas, mediastinum, BODY, T.FAT, only=lungs)
    paint_blob(canvas, outer.scaled(1.09), BODY, T.FAT, clip=above_diaphragm)
    for c, r, _ in atria:
        paint_blob(canvas, Blob(tuple(c), tuple(np.array(r) * 1.15)), BODY, T.FAT, clip=above_diaphragm)
    paint_blob(canvas, outer, heart, T.MYOCARDIUM, clip=above_diaphragm)
    for c, r, _ in atria:
        paint_blob(canvas, Blob(tuple(c), tuple(np.array(r) + 3.0)), heart, T.MYOCARDIUM, clip=above_diaphragm)
    lr = lm.heart_radii
    lv = Blob(
        tuple(h + rot.T @ np.array([0.12 * lr[0], -0.2 * lr[1], 0.0])), (0.6 * lr[0], 0.38 * lr[1], 0.4 * lr[2]), rot
    )
    rv = Blob(
        tuple(h + rot.T @ np.array([-0.05 * lr[0], 0.45 * lr[1], 0.0])), (0.55 * lr[0], 0.25 * lr[1], 0.45 * lr[2]), rot
    )
    for chamber, tissue in ((lv, T.BLOOD_LEFT), (rv, T.BLOOD_RIGHT)):
        paint_blob(canvas, chamber, None, tissue, only=[heart])
    for c, r, tissue in atria:
        paint_blob(canvas, Blob(tuple(c), r), heart, tissue)
    paint_blob(canvas, Blob(tuple(h + (38.0, 5.0, 38.0)), (12, 8, 10)), label_of("atrial_appendage_left"), T.BLOOD_LEFT)
