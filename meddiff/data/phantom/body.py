"""Body wall of the phantom (skin, subcutaneous fat, muscle wall, visceral / mediastinal fat), breasts, the
large labelled muscles (paraspinal ``autochthon``, ``iliopsoas``, glutei) and the scanner table."""

from __future__ import annotations

import numpy as np

from meddiff.data.phantom.canvas import Blob, Canvas, Region, label_of, paint_blob, paint_tube, rotation, smooth_path
from meddiff.data.phantom.patient import SPINE_LEVELS, Patient
from meddiff.data.phantom.skeleton import canal_centre
from meddiff.data.phantom.tissues import Tissue as T

BODY = 118
SKIN_MM = 2.0


def paint_body_wall(canvas: Canvas, p: Patient) -> None:
    """Trunk and neck outline in layers: skin, subcutaneous fat, muscle wall and the fat of the body
    cavities that the organs are later drawn into (all labelled body)."""
    reg = canvas.everywhere()  # drawn first: overwrites the whole canvas
    d, fat, wall = p.wall(reg)
    layer = (d > 0).view(np.int8) + (d > SKIN_MM).view(np.int8)
    layer += (d > SKIN_MM + fat).view(np.int8)
    layer += (d > SKIN_MM + wall).view(np.int8)
    lut = np.array([T.AIR, T.SKIN, T.FAT, T.MUSCLE, T.FAT], np.uint8)
    canvas.tissue[...] = lut[layer]
    canvas.label[...] = np.where(layer > 0, np.uint8(BODY), np.uint8(0))


def inside_lean(p: Patient):
    """Clip function: voxels under the subcutaneous fat (muscles must not bulge into it)."""

    def clip(reg: Region) -> np.ndarray:
        d, fat, _ = p.wall(reg)
        return d > SKIN_MM + fat + 1.0

    return clip


def paint_muscles(canvas: Canvas, p: Patient) -> None:
    """Paraspinal muscles (C2 to sacrum), psoas from T12 to the lesser trochanter, glutei."""
    w, d, rng = p.width, p.depth_factor, p.rng
    clip = inside_lean(p)
    levels = [p.v(n) for n in SPINE_LEVELS if n not in ("C1",)]
    for side, name in ((1.0, "left"), (-1.0, "right")):
        pts, radii = [], []
        for v in levels:
            yc, _ = canal_centre(v)
            kind = v.name[0]
            off_x, off_y, r = {"S": (32, 22, 18), "L": (38, 24, 25), "T": (28, 20, 17), "C": (22, 20, 13)}[kind]
            pts.append((side * off_x * w, yc + off_y, v.z))
            radii.append(r * rng.uniform(0.9, 1.1))
        path, rad = smooth_path(pts, radii, 6.0)
        paint_tube(canvas, path, rad, label_of(f"autochthon_{name}"), T.MUSCLE, only=[BODY], clip=clip)
        t12, l3, l5 = p.v("T12"), p.v("L3"), p.v("L5")
        psoas = [
            (side * (t12.a + 6), t12.y + 2, t12.z),
            (side * (l3.a + 14), l3.y - 4, l3.z),
            (side * (l5.a + 24), l5.y - 12, l5.z),
            (side * 62 * w, -12 * d, p.v("S1").z_bot),
            (side * 72 * w, -42 * d, 55.0),
            (side * 95 * w, -20 * d, 10.0),
        ]
        path, rad = smooth_path(psoas, np.array([6, 14, 21, 20, 16, 12]) * rng.uniform(0.85, 1.15), 5.0)
        paint_tube(canvas, path, rad, label_of(f"iliopsoas_{name}"), T.MUSCLE, only=[BODY], clip=clip)
        glutes = [
            ("gluteus_maximus", (side * 88 * w, 88 * d, 55.0), (55, 32, 70), 20),
            ("gluteus_medius", (side * 118 * w, 40 * d, 130.0), (28, 48, 42), 10),
            ("gluteus_minimus", (side * 104 * w, 22 * d, 105.0), (16, 36, 32), 10),
        ]
        for muscle, c, r, yaw in glutes:
            blob = Blob.random(rng, c, np.array(r) * rng.uniform(0.9, 1.1), rotation(yaw=side * yaw), amp=0.05)
            paint_blob(canvas, blob, label_of(f"{muscle}_{name}"), T.MUSCLE, only=[BODY], clip=clip)


def paint_table(canvas: Canvas, rng: np.random.Generator) -> None:
    """A curved carbon-fibre table (shells around foam) just below the patient's back, outside the body
    (label 0). Drawn in scanner coordinates: the table does not move with the patient."""
    body = canvas.label.any(axis=2)  # (Z, Y)
    has = body.any(axis=1)
    if not has.any():
        return
    back = canvas.y.size - 1 - np.argmax(body[has][:, ::-1], axis=1)  # most posterior body row per slice
    y_back = float(np.percentile(canvas.y[back], 80)) + rng.uniform(1.0, 8.0)
    half = rng.uniform(200.0, 240.0)
    y_surf = y_back - 18.0 * (canvas.x / half) ** 2  # (X,) top surface curving up at the edges
    dy = canvas.y[:, None] - y_surf[None, :]  # (Y, X)
    inside = np.abs(canvas.x)[None, :] < half
    shell = inside & (((dy >= 0) & (dy < 3)) | ((dy >= 38) & (dy < 41)))
    foam = inside & (dy >= 3) & (dy < 38)
    free = canvas.label == 0
    canvas.tissue[free & foam[None]] = T.TABLE_FOAM
    canvas.tissue[free & shell[None]] = T.TABLE_SHELL


def paint_breasts(canvas: Canvas, p: Patient) -> None:
    """Female patients: breasts on the anterior chest wall (fat around fibroglandular tissue), supine so
    flattened and falling laterally."""
    if p.male:
        return
    rng, w, d = p.rng, p.width, p.depth_factor
    z = p.v("T5").z + rng.uniform(-15, 10)
    prof = p.profile(np.array([z]))
    y_wall = -float(prof["ba"][0] + prof["fat"][0])
    size = rng.uniform(0.5, 1.1)

    def outside_muscle(reg: Region) -> np.ndarray:
        d_skin, fat, _ = p.wall(reg)
        return d_skin < SKIN_MM + fat

    for s in (1.0, -1.0):
        c = (s * 62 * w, y_wall + 10.0 - 4.0 * size, z)
        blob = Blob.random(rng, c, np.array([50, 18 * d, 45]) * size, rotation(yaw=s * 10), amp=0.05)
        paint_blob(canvas, blob, BODY, T.FAT, only=[0, BODY], clip=outside_muscle)

        def skin(reg: Region, b: Blob = blob) -> np.ndarray:  # the breast's own skin, not inside the chest
            return (b.rho(reg) > 0.95) & (p.depth(reg) < 0)

        paint_blob(canvas, blob.scaled(0.97), BODY, T.SKIN, only=[BODY], clip=skin)
        gland = Blob.random(rng, c, np.array([36, 12, 32]) * size * rng.uniform(0.6, 1.1), None, amp=0.2)
        paint_blob(canvas, gland, BODY, T.GLAND, only=[BODY], clip=outside_muscle)
