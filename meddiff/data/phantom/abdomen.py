"""Abdominal and pelvic organs of the phantom: liver (with portal and hepatic vein trees), gallbladder,
spleen, kidneys (cortex, medulla, sinus fat, pelvis, optional cyst) and adrenals, pancreas, stomach with an
air-fluid level, duodenum, small bowel loops, colon with faeces and gas, portal / splenic / mesenteric
vessels, urinary bladder and prostate. Positions follow the vertebral levels and the diaphragm."""

from __future__ import annotations

import numpy as np

from meddiff.data.phantom.body import SKIN_MM
from meddiff.data.phantom.canvas import (
    Blob,
    Canvas,
    Region,
    branching_tree,
    frame_from_axis,
    label_of,
    paint_blob,
    paint_hollow_tube,
    paint_tree,
    paint_tube,
    rotation,
    smooth_path,
)
from meddiff.data.phantom.patient import Patient
from meddiff.data.phantom.tissues import Tissue as T

BODY = 118


def cavity_clip(p: Patient, margin: float = 1.0):
    """Clip function: inside the muscle wall and below the diaphragm."""

    def clip(reg: Region) -> np.ndarray:
        d, _, wall = p.wall(reg)
        return (d > wall + SKIN_MM + margin) & (reg.uz < p.diaphragm(reg.ux, reg.uy) - 4.0)

    return clip


def _front(p: Patient, name: str, gap: float) -> float:
    v = p.v(name)
    return v.y - v.b - gap


def paint_abdomen(canvas: Canvas, p: Patient) -> None:
    if canvas.z_range[0] > p.dome_right + 20.0 or canvas.z_range[1] < -40.0:
        return
    _paint_solid_organs(canvas, p)
    _paint_kidneys(canvas, p)
    paint_pancreas(canvas, p)
    _paint_pelvic_organs(canvas, p)
    _paint_hollow_organs(canvas, p)
    _paint_visceral_vessels(canvas, p)


def _paint_solid_organs(canvas: Canvas, p: Patient) -> None:
    rng, w, d, s = p.rng, p.width, p.depth_factor, p.organ_scale
    clip = cavity_clip(p)
    zr, zl = p.dome_right, p.dome_left
    liver = label_of("liver")
    ls = s * rng.uniform(0.9, 1.12)
    lobes = [
        Blob.random(
            rng,
            (-62 * w, 6 * d, zr - 62 * ls),
            np.array([74 * w, 88 * d, 80]) * ls,
            rotation(yaw=rng.uniform(-10, 10)),
            0.06,
        ),
        Blob.random(
            rng,
            (16 * w, -50 * d, zr - 40 * ls),
            np.array([60 * w, 38 * d, 36]) * ls * rng.uniform(0.8, 1.2),
            rotation(yaw=-15),
            0.08,
        ),
        Blob((-16.0, 22 * d, zr - 55), (18.0, 18.0, 30.0)),
    ]
    for lobe in lobes:
        paint_blob(canvas, lobe, liver, T.LIVER, clip=clip)
    porta = np.array([-30 * w, -14 * d, zr - 95 * ls])
    for direction in ((-1.0, 0.3, 0.35), (1.0, -0.5, 0.35), (-0.4, -0.8, 0.2)):
        paint_tree(
            canvas, branching_tree(rng, porta, direction, 30.0, 6.0, 4, spread=30.0), None, T.PORTAL, only=[liver]
        )
    hv_root = np.array([-24 * w, _front(p, "T11", 18.0), zr - 22.0])
    for direction in ((-1.0, -0.1, -0.15), (-0.2, -1.0, -0.3), (0.8, -0.9, -0.1)):
        paint_tree(
            canvas, branching_tree(rng, hv_root, direction, 35.0, 5.5, 3, spread=25.0), None, T.VEIN, only=[liver]
        )
    gb = Blob.random(
        rng,
        (-44 * w, -52 * d, zr - 108 * ls),
        np.array([36, 15, 16]) * rng.uniform(0.7, 1.2),
        frame_from_axis((0.2, -0.7, -0.7)),
        0.03,
    )
    paint_blob(canvas, gb, label_of("gallbladder"), T.BILE, clip=clip)
    spleen = Blob.random(
        rng,
        (88 * w, 40 * d, zl - 58 * s),
        np.array([60, 20, 36]) * s * rng.uniform(0.8, 1.25),
        frame_from_axis((0.3, -0.85, -0.4)),
        0.07,
    )
    paint_blob(canvas, spleen, label_of("spleen"), T.SPLEEN, clip=clip)


def _paint_kidneys(canvas: Canvas, p: Patient) -> None:
    rng, w, d, s, v = p.rng, p.width, p.depth_factor, p.organ_scale, p.v
    clip = cavity_clip(p)
    for side, name, z in ((1.0, "left", v("L1").z_bot), (-1.0, "right", v("L2").z_top)):
        lab = label_of(f"kidney_{name}")
        ks = s * rng.uniform(0.88, 1.12)
        c = np.array([side * 66 * w, 46 * d, z + rng.uniform(-10, 10)])
        rot = frame_from_axis((-side * 0.25, 0.15, 1.0), twist=side * 30.0)
        kid = Blob.random(rng, c, np.array([55, 27, 19]) * ks, rot, 0.03)
        paint_blob(canvas, kid.scaled(1.3), BODY, T.FAT, only=[BODY], clip=clip)  # perirenal fat
        paint_blob(canvas, kid, lab, T.KIDNEY_CORTEX, clip=clip)
        medulla = Blob.random(rng, c, np.array([55, 27, 19]) * ks * 0.72, rot, 0.15)
        paint_blob(canvas, medulla, None, T.KIDNEY_MEDULLA, only=[lab])
        hilum_dir = rot[1] * side  # local y points roughly to the patient's right; the hilum faces medially
        sinus_c = c + hilum_dir * 18.0 * ks
        paint_blob(canvas, Blob(tuple(sinus_c), tuple(np.array([30, 11, 9]) * ks), rot), BODY, T.FAT, only=[lab])
        paint_blob(canvas, Blob(tuple(sinus_c), tuple(np.array([14, 6, 5]) * ks), rot), BODY, T.URINE)
        if rng.random() < 0.2:
            cyst_c = c + rot[0] * rng.uniform(-35, 35) * ks + rot[1] * side * 20.0
            paint_blob(
                canvas,
                Blob(tuple(cyst_c), (rng.uniform(5, 12),) * 3),
                label_of(f"kidney_cyst_{name}"),
                T.URINE,
                clip=clip,
            )
        top = c + rot[0] * 55 * ks
        adrenal = Blob(tuple(top + (-side * 12.0, -4.0, 14.0)), (4.0, 13.0, 18.0), rotation(yaw=side * 30))
        paint_blob(canvas, adrenal, label_of(f"adrenal_gland_{name}"), T.ADRENAL, only=[BODY], clip=clip)
        # renal vein to the IVC (left crosses in front of the aorta), renal artery behind it
        ivc = np.array([-22 * w, _front(p, "L1", 12.0), c[2]])
        aorta = np.array([5.0, _front(p, "L1", 12.0), c[2] + 8])
        vein_end = ivc if side < 0 else np.array([0.0, aorta[1] - 14.0, c[2] + 4])
        vein = [sinus_c, vein_end] if side < 0 else [sinus_c, vein_end, ivc]
        paint_tube(canvas, np.array(vein), np.full(len(vein), 4.5), BODY, T.VEIN, only=[BODY])
        paint_tube(canvas, np.array([sinus_c + (0, 6, 4), aorta]), np.array([3.0, 3.0]), BODY, T.ARTERY, only=[BODY])


def _paint_pelvic_organs(canvas: Canvas, p: Patient) -> None:
    rng, d = p.rng, p.depth_factor
    clip = cavity_clip(p)
    fill = rng.uniform(0.55, 1.3)
    bladder = Blob.random(rng, (0.0, -42 * d, 28 + 22 * fill), np.array([42, 32, 30]) * fill, None, 0.04)
    lab = label_of("urinary_bladder")
    paint_blob(canvas, bladder, lab, T.BOWEL_WALL, clip=clip)
    paint_blob(canvas, bladder.scaled(1 - 3.0 / (30 * fill)), lab, T.URINE, only=[lab])
    if p.male:
        paint_blob(
            canvas, Blob.random(rng, (0.0, -22 * d, 6.0), (20, 15, 17), None, 0.05), label_of("prostate"), T.PROSTATE
        )


def _gas_runs(rng: np.random.Generator, n_points: int, n_runs: int, max_len: int) -> np.ndarray:
    """Boolean (n_points,) marking a few random runs of consecutive path points (gas pockets)."""
    gas = np.zeros(n_points, bool)
    for _ in range(n_runs):
        start = rng.integers(0, max(n_points - 1, 1))
        gas[start : start + rng.integers(2, max_len)] = True
    return gas


def _bowel_walk(
    rng: np.random.Generator, start: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int, step: float
) -> np.ndarray:
    """A persistent random walk inside the box [lo, hi] that prefers unvisited 15 mm cells, so the loops
    fill the abdomen like small bowel instead of balling up. Returns (n + 1, 3) points."""
    cell = 15.0
    shape = np.maximum(np.ceil((hi - lo) / cell).astype(int), 1)
    visits = np.zeros(shape, np.int32)
    pos, direction = np.clip(start, lo, hi), np.array([0.0, -1.0, -0.3])
    pts = [pos.copy()]
    for _ in range(n):
        cands = 0.75 * direction + 0.6 * rng.normal(size=(6, 3)) / np.sqrt(3)
        cands /= np.linalg.norm(cands, axis=1, keepdims=True)
        nxt = np.clip(pos + step * cands, lo, hi)
        idx = np.minimum(((nxt - lo) / cell).astype(int), shape - 1)
        score = visits[idx[:, 0], idx[:, 1], idx[:, 2]] + 0.3 * rng.random(6)
        k = int(np.argmin(score))
        direction, pos = cands[k], nxt[k]
        visits[tuple(idx[k])] += 1
        pts.append(pos.copy())
    return np.array(pts)


def _paint_hollow_organs(canvas: Canvas, p: Patient) -> None:
    rng, w, d, v = p.rng, p.width, p.depth_factor, p.v
    clip = cavity_clip(p)
    zl = p.dome_left
    # stomach: fundus under the left dome to the pylorus, air above the fluid (supine: anterior)
    dist = rng.uniform(0.7, 1.2)
    st = [
        (50 * w, 15 * d, zl - 18),
        (62 * w, -28 * d, zl - 58),
        (45 * w, -55 * d, v("L1").z),
        (10.0, -62 * d, v("L1").z),
        (-20 * w, -45 * d, v("L1").z + 5),
    ]
    path, rad = smooth_path(st, np.array([38, 34, 28, 20, 10]) * dist, 5.0)
    stomach = label_of("stomach")
    paint_hollow_tube(canvas, path, rad, 4.0, stomach, T.BOWEL_WALL, T.STOMACH_CONTENT, only=[BODY], clip=clip)
    level = rng.uniform(-45, 10)
    lo, hi = path.min(0) - rad.max(), path.max(0) + rad.max()
    reg = canvas.region(lo, hi)
    if reg is not None:
        reg.paint((reg.uy < level) & (reg.tissue == T.STOMACH_CONTENT), None, T.AIR, only=[stomach])
    # duodenum: C-loop around the pancreatic head, crossing in front of the aorta at L3
    du = [
        (-20 * w, -45 * d, v("L1").z + 5),
        (-42 * w, -25 * d, v("L1").z),
        (-54 * w, -6 * d, v("L1").z_bot),
        (-56 * w, -6 * d, v("L3").z),
        (-30 * w, -14 * d, v("L3").z_bot),
        (0.0, _front(p, "L3", 30.0), v("L3").z_bot),
        (24 * w, -22 * d, v("L3").z),
        (30 * w, -26 * d, v("L2").z),
    ]
    path, rad = smooth_path(du, np.full(len(du), 11.0), 4.0)
    paint_hollow_tube(canvas, path, rad, 2.5, label_of("duodenum"), T.BOWEL_WALL, T.BOWEL_FLUID, only=[BODY], clip=clip)
    dj = np.array(du[-1], float)
    # small bowel: a persistent random walk through the anterior abdomen and pelvis, ending at the cecum
    lo = np.array([-95 * w, -105 * d, max(45.0, v("S1").z_top - 60)])
    hi = np.array([95 * w, 25.0, v("L2").z])
    pts = _bowel_walk(rng, dj, lo, hi, int(rng.integers(550, 750)), step=8.0)
    cecum = np.array([-72 * w, -25 * d, v("L5").z - 5])
    pts = np.vstack([pts, cecum + (20.0, -5.0, 10.0)])
    radii = np.full(len(pts), 13.0 * rng.uniform(0.85, 1.15))
    paint_hollow_tube(
        canvas, pts, radii, 2.5, label_of("small_bowel"), T.BOWEL_WALL, T.BOWEL_FLUID, only=[BODY], clip=clip
    )
    # colon frame: cecum, ascending, hepatic flexure, sagging transverse, splenic flexure, descending, sigmoid, rectum
    co = [
        tuple(cecum),
        (-88 * w, 5 * d, v("L3").z),
        (-76 * w, -22 * d, v("L1").z - 5),
        (-30 * w, -78 * d, v("L3").z),
        (30 * w, -80 * d, v("L3").z + 10),
        (78 * w, -5 * d, v("T12").z - 5),
        (88 * w, 10 * d, v("L3").z),
        (86 * w, 0.0, v("L5").z),
        (50 * w, -35 * d, v("S1").z_bot),
        (10.0, -45 * d, 75.0),
        (-15.0, -20 * d, 92.0),
        (0.0, 42 * d, 62.0),
        (0.0, 50 * d, 18.0),
    ]
    cr = np.array([28, 24, 22, 22, 21, 20, 18, 17, 16, 16, 16, 18, 17]) * rng.uniform(0.85, 1.15)
    path, rad = smooth_path(co, cr, 5.0)
    arc = np.arange(len(path)) * 5.0
    rad = rad * (1.0 + 0.12 * np.sin(2 * np.pi * arc / 22.0))  # haustra
    colon = label_of("colon")
    paint_hollow_tube(canvas, path, rad, 2.5, colon, T.BOWEL_WALL, T.FECES, only=[BODY], clip=clip)
    gas = _gas_runs(rng, len(path), int(rng.integers(2, 7)), 14)
    sel = np.flatnonzero(gas)
    for i in sel[sel + 1 < len(path)]:
        paint_tube(canvas, path[i : i + 2], np.maximum(rad[i : i + 2] - 2.5, 1.0), None, T.AIR, only=[colon])
    level = rng.uniform(-75, -30)
    reg = canvas.region(path.min(0) - 30, path.max(0) + 30)
    if reg is not None:
        reg.paint((reg.uy < level) & (reg.tissue == T.FECES), None, T.AIR, only=[colon])


def _paint_visceral_vessels(canvas: Canvas, p: Patient) -> None:
    w, d, v, zr = p.width, p.depth_factor, p.v, p.dome_right
    portal = label_of("portal_vein_and_splenic_vein")
    conf = np.array([-8.0, _front(p, "L1", 38.0), v("L1").z_bot])
    splenic = [(70 * w, 22 * d, v("T12").z), (35 * w, _front(p, "L1", 30.0) + 4, v("L1").z), tuple(conf)]
    path, rad = smooth_path(splenic, [4.5, 5.0, 6.0], 4.0)
    paint_tube(canvas, path, rad, portal, T.PORTAL, only=[BODY, label_of("pancreas")])
    pv = [tuple(conf), (-22 * w, -16 * d, v("T12").z), (-30 * w, -14 * d, zr - 95)]
    path, rad = smooth_path(pv, [6.5, 6.5, 6.0], 4.0)
    paint_tube(canvas, path, rad, portal, T.PORTAL, only=[BODY, label_of("pancreas"), label_of("liver")])
    smv = [tuple(conf), (-6.0, _front(p, "L3", 45.0), v("L3").z), (-10.0, -50 * d, v("L5").z)]
    paint_tube(canvas, np.array(smv), np.array([5.0, 4.5, 3.5]), BODY, T.PORTAL, only=[BODY])
    sma = [
        (4.0, _front(p, "L1", 20.0), v("L1").z),
        (4.0, _front(p, "L2", 32.0), v("L2").z_bot),
        (6.0, -48 * d, v("L5").z),
    ]
    paint_tube(canvas, np.array(sma), np.array([3.5, 3.5, 2.5]), BODY, T.ARTERY, only=[BODY])
    celiac = [(4.0, _front(p, "T12", 14.0), v("T12").z), (6.0, _front(p, "T12", 30.0), v("T12").z - 4)]
    paint_tube(canvas, np.array(celiac), np.array([3.5, 3.2]), BODY, T.ARTERY, only=[BODY])


def paint_pancreas(canvas: Canvas, p: Patient) -> None:
    """Pancreas from the head in the duodenal C-loop to the tail at the splenic hilum."""
    rng, w, d, s, v = p.rng, p.width, p.depth_factor, p.organ_scale, p.v
    pts = [
        (-24 * w, -4 * d, v("L2").z),
        (-32 * w, -10 * d, v("L2").z_top),
        (-5.0, -30 * d, v("L1").z_bot),
        (35 * w, -20 * d, v("L1").z),
        (75 * w, 14 * d, v("T12").z),
    ]
    radii = np.array([10, 16, 11, 12, 9]) * s * rng.uniform(0.8, 1.15)
    path, rad = smooth_path(pts, radii, 4.0)
    paint_tube(canvas, path, rad, label_of("pancreas"), T.PANCREAS, only=[BODY], clip=cavity_clip(p))
