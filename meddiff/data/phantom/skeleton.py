"""Axial and thoracic skeleton of the phantom: vertebrae with discs, spinal canal and cord, ribs with
costal cartilages, sternum, clavicles, scapulae and humeral heads.

Bones have a cortical shell around cancellous bone where they are thick enough to show it at 1.5-3 mm.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from meddiff.data.phantom.canvas import (
    Blob,
    Canvas,
    label_of,
    paint_blob,
    paint_hollow_tube,
    paint_tube,
    rotation,
    smooth_path,
)
from meddiff.data.phantom.patient import SPINE_LEVELS, Patient, Vertebra
from meddiff.data.phantom.tissues import Tissue as T

BODY = 118

# spinal canal half-axes (lateral, antero-posterior), spinous process length and slope, transverse reach
_CANAL = {"C": (12.0, 8.0), "T": (8.5, 8.0), "L": (11.5, 9.0), "S": (12.0, 6.0)}
_POSTERIOR = {"C": (16.0, 0.3, 24.0), "T": (22.0, 0.8, 30.0), "L": (26.0, 0.2, 42.0), "S": (12.0, 0.2, 30.0)}


def canal_centre(v: Vertebra) -> tuple[float, float]:
    """(y centre, lateral half-axis) of the spinal canal behind a vertebral body."""
    ra, rb = (14.0, 12.0) if v.name == "C1" else _CANAL[v.name[0]]
    return v.y + v.b + rb + 1.0, ra


def _paint_vertebra(canvas: Canvas, v: Vertebra) -> None:
    kind = v.name[0]
    ra, rb = (14.0, 12.0) if v.name == "C1" else _CANAL[kind]
    spin_len, slope, reach = _POSTERIOR[kind]
    h = v.z_top - v.z_bot
    yc = v.b + rb + 1.0  # canal centre relative to the body centre
    lo = (-reach - 3, v.y - v.b - 3, v.z_bot - slope * spin_len - 0.5 * h)
    hi = (reach + 3, v.y + yc + rb + spin_len + 12, v.z_top + 0.3 * h)
    reg = canvas.region(lo, hi)
    if reg is None:
        return
    x, y, z = reg.ux, reg.uy - v.y, reg.uz
    zc = v.z
    in_z = (z >= v.z_bot) & (z <= v.z_top)
    canal = (x / ra) ** 2 + ((y - yc) / rb) ** 2 < 1.0
    ring = ((x / (ra + 5.0)) ** 2 + ((y - yc) / (rb + 5.0)) ** 2 < 1.0) & ~canal & (y > v.b - 4.0)
    post_z = (z > v.z_bot + 0.1 * h) & (z < v.z_top + 0.2 * h)
    ys = y - (yc + rb + 3.0)
    spinous = (ys >= -2.0) & (ys < spin_len) & (np.abs(x) < 3.5) & (np.abs(z - (zc - slope * ys)) < 0.3 * h + 1.0)
    ax = np.abs(x)
    tilt = 0.45 if kind == "T" else 0.0  # thoracic transverse processes point back to the rib tubercles
    transverse = (
        (ax > ra) & (ax < reach) & (np.abs(y - yc + 3.0 - tilt * (ax - ra)) < 5.0) & (np.abs(z - zc) < 0.25 * h + 2.0)
    )
    if v.name == "C1":  # the atlas: a ring around the canal and the dens, no body
        body = in_z & ((x / (ra + 9.0)) ** 2 + ((y - yc) / (rb + 9.0)) ** 2 < 1.0) & ~canal
        inner = np.zeros_like(body)
    else:
        body = in_z & ((x / v.a) ** 2 + (y / v.b) ** 2 < 1.0)
        inner = (z > v.z_bot + 1.2) & (z < v.z_top - 1.2) & ((x / (v.a - 2.0)) ** 2 + (y / (v.b - 2.0)) ** 2 < 1.0)
    label = label_of(f"vertebrae_{v.name}")
    posterior = (ring & post_z) | spinous | transverse
    reg.paint(body | posterior, label, T.CORTICAL)
    reg.paint(inner, None, T.CANCELLOUS)
    # the arch and processes are cancellous bone inside a thin cortex too
    reg.paint(ndimage.binary_erosion(posterior, np.ones((1, 3, 3), bool)), None, T.CANCELLOUS)


def paint_spine(canvas: Canvas, p: Patient) -> None:
    """Discs, vertebrae S1..C1 (label ``vertebrae_<level>``), the dens, the CSF-filled canal and the cord
    from the foramen magnum to the conus at L1/L2 (label ``spinal_cord``)."""
    levels = [p.v(n) for n in SPINE_LEVELS]
    for lower, upper in zip(levels[:-2], levels[1:-1]):  # no disc between C1 and C2
        r = 0.5 * (lower.a + upper.a), 0.5 * (lower.b + upper.b)
        y = 0.5 * (lower.y + upper.y)
        z0, z1 = lower.z_top, upper.z_bot
        reg = canvas.region((-r[0], y - r[1], z0 - 1), (r[0], y + r[1], z1 + 1))
        if reg is not None:
            m = ((reg.ux / r[0]) ** 2 + ((reg.uy - y) / r[1]) ** 2 < 1.0) & (reg.uz >= z0) & (reg.uz <= z1)
            reg.paint(m, BODY, T.DISC)
    for v in levels:
        _paint_vertebra(canvas, v)
    c1, c2 = p.v("C1"), p.v("C2")
    yc1, _ = canal_centre(c1)
    dens = np.array([[0.0, yc1 - 8.0, c2.z_top - 2.0], [0.0, yc1 - 8.0, c1.z_top - 1.0]])
    paint_tube(canvas, dens, np.array([5.5, 5.0]), label_of("vertebrae_C2"), T.CORTICAL)
    # canal and cord along the canal centres (the cord sits behind the dens at C1/C2)
    pts = [(0.0, canal_centre(v)[0] + (4.0 if v.name in ("C1", "C2") else 0.0), v.z) for v in levels]
    pts.append((0.0, pts[-1][1], p.z_fm + 4.0))
    pts = np.array(pts)
    radii = np.array([min(_CANAL[v.name[0]]) - 1.0 for v in levels] + [9.0])
    path, rad = smooth_path(pts, radii, 4.0)
    paint_tube(canvas, path, rad, BODY, T.CSF, only=[BODY])
    z_conus = 0.5 * (p.v("L1").z + p.v("L2").z)
    cord_r = np.interp(
        path[:, 2],
        [z_conus - 5, z_conus + 20, p.v("T10").z, p.v("T1").z, p.v("C4").z, p.z_fm],
        [0.0, 3.5, 4.5, 4.5, 6.0, 6.5],
    )
    keep = cord_r > 0.5
    paint_tube(canvas, path[keep], cord_r[keep], label_of("spinal_cord"), T.SPINAL_CORD, only=[BODY])


def _rib_point(p: Patient, side: float, theta: float, z: float) -> np.ndarray:
    c = p.cage(z)
    b = c["Bp"] if np.cos(theta) > 0 else c["Ba"]
    r = 1.0 / np.sqrt((np.sin(theta) / c["A"]) ** 2 + (np.cos(theta) / b) ** 2)
    return np.array([side * r * np.sin(theta), r * np.cos(theta), z])


def sternum_y(p: Patient, z: np.ndarray | float) -> np.ndarray:
    return -p.cage(z)["Ba"] - 1.0


def sternum_levels(p: Patient) -> dict[str, float]:
    """z of the jugular notch (manubrium top), the sternal angle and the xiphoid tip."""
    top = p.v("T2").z_bot
    angle = 0.5 * (p.v("T4").z_bot + p.v("T5").z_top)
    return {"top": top, "angle": angle, "xiphoid_joint": p.v("T9").z, "xiphoid": p.v("T10").z}


def paint_thoracic_cage(canvas: Canvas, p: Patient) -> None:
    """Ribs 1-12 on both sides (``rib_<side>_<n>``), costal cartilages, sternum, clavicles, scapulae and
    humeral heads."""
    rng = p.rng
    st = sternum_levels(p)
    attach = np.interp(np.arange(1, 8), [1, 2, 7], [st["top"] - 12.0, st["angle"], st["xiphoid_joint"] + 5.0])
    drops = [25, 45, 62, 78, 88, 94, 98, 98, 94, 85, 60, 40]
    ends = [2.2, 2.55, 2.6, 2.6, 2.6, 2.55, 2.5, 2.35, 2.2, 2.05, 1.75, 1.35]
    for side, side_name in ((1.0, "left"), (-1.0, "right")):
        for i in range(1, 13):
            v = p.v(f"T{i}")
            yc, ra = canal_centre(v)
            z0 = v.z + 0.3 * (v.z_top - v.z_bot)
            drop = drops[i - 1] * rng.uniform(0.85, 1.15)
            thetas = np.linspace(0.45, ends[i - 1], 12)
            frac = (thetas - thetas[0]) / (thetas[-1] - thetas[0])
            pts = [np.array([side * (ra + 12.0), yc + 2.0, z0])]
            pts += [_rib_point(p, side, th, z0 - drop * f**1.15) for th, f in zip(thetas, frac)]
            path, _ = smooth_path(pts, np.zeros(len(pts)), 8.0)
            r = 6.0 if i == 1 else (4.0 if i >= 11 else 5.0)
            label = label_of(f"rib_{side_name}_{i}")
            paint_hollow_tube(canvas, path, np.full(len(path), r), 1.8, label, T.CORTICAL, T.CANCELLOUS)
            if i <= 10:  # costal cartilage to the sternum (8-10 join the cartilage above)
                end = pts[-1]
                if i <= 7:
                    z_att = attach[i - 1]
                    target = np.array([side * 16.0, float(sternum_y(p, z_att)), z_att])
                else:
                    z_att = attach[6] - 8.0 * (i - 7)
                    target = np.array([side * (30.0 + 12 * (i - 7)), float(sternum_y(p, z_att)) + 8.0, z_att])
                mid = _rib_point(p, side, 0.5 * (ends[i - 1] + 3.0), 0.5 * (end[2] + z_att))
                cpath, _ = smooth_path([end, mid, target], [0, 0, 0], 7.0)
                paint_tube(canvas, cpath, np.full(len(cpath), r - 0.5), label_of("costal_cartilages"), T.CARTILAGE)
    _paint_sternum(canvas, p, st)
    _paint_shoulders(canvas, p, st)


def _paint_sternum(canvas: Canvas, p: Patient, st: dict[str, float]) -> None:
    zk = [st["xiphoid"], st["xiphoid_joint"], st["angle"] - 5, st["angle"] + 5, st["top"]]
    half_w = np.array([5.0, 12.0, 15.0, 24.0, 26.0])
    half_t = np.array([3.0, 6.0, 6.5, 7.5, 8.0])
    y_lo = float(np.min(sternum_y(p, np.array(zk)))) - 12
    y_hi = float(np.max(sternum_y(p, np.array(zk)))) + 12
    reg = canvas.region((-28, y_lo, zk[0]), (28, y_hi, zk[-1]))
    if reg is None:
        return
    z = reg.z1d
    w = np.interp(z, zk, half_w)[:, None, None]
    t = np.interp(z, zk, half_t)[:, None, None]
    yc = sternum_y(p, z)[:, None, None]
    q = (reg.ux / w) ** 2 + ((reg.uy - yc) / t) ** 2
    inside = (q < 1.0) & (reg.uz >= zk[0]) & (reg.uz <= zk[-1])
    reg.paint(inside, label_of("sternum"), T.CORTICAL)
    inner = ((reg.ux / np.maximum(w - 2.0, 1.0)) ** 2 + ((reg.uy - yc) / np.maximum(t - 2.0, 0.5)) ** 2 < 1.0) & inside
    reg.paint(inner, None, T.CANCELLOUS)


def _paint_shoulders(canvas: Canvas, p: Patient, st: dict[str, float]) -> None:
    rng, w = p.rng, p.width
    z_top = st["top"]
    y_top = float(sternum_y(p, z_top))
    z_sh = p.v("T2").z_top
    c2 = p.cage(z_sh)
    for side, name in ((1.0, "left"), (-1.0, "right")):
        x_head = side * (float(c2["A"]) + 45.0 * w)
        clav = [
            (side * 18, y_top - 2, z_top + 3),
            (side * 60, y_top - 6, z_top + 10),
            (side * 105 * w, -15, z_top + 18),
            (x_head * 0.95, 8, z_sh + 28),
        ]
        path, rad = smooth_path(clav, [7.0, 6.5, 6.0, 6.0], 4.0)
        paint_hollow_tube(canvas, path, rad, 2.2, label_of(f"clavicula_{name}"), T.CORTICAL, T.CANCELLOUS)
        # scapula: a thin blade on the back of the cage, its spine and the glenoid neck
        z_sc = p.v("T4").z
        cs = p.cage(z_sc)
        xb = 90.0 * w
        yb = float(cs["Bp"] * np.sqrt(max(1 - (xb / cs["A"]) ** 2, 0.05))) + 14.0
        lab = label_of(f"scapula_{name}")
        blade = Blob.random(rng, (side * xb, yb, z_sc), (45 * w, 4.0, 62), rotation(yaw=-side * 27), amp=0.05)
        paint_blob(canvas, blade, lab, T.CORTICAL)
        spine_pts = [(side * 55, yb + 6, p.v("T3").z), (side * 130 * w, 30, z_sh + 12)]
        paint_tube(canvas, np.array(spine_pts), np.array([3.0, 6.0]), lab, T.CORTICAL)
        paint_blob(canvas, Blob((x_head - side * 28, 18.0, z_sh), (13, 17, 20)), lab, T.CORTICAL)
        head = Blob((x_head, 12.0, z_sh - 5), (22.0, 22.0, 23.0))
        hum = label_of(f"humerus_{name}")
        paint_blob(canvas, head, hum, T.CORTICAL)
        paint_blob(canvas, head.scaled(0.88), hum, T.CANCELLOUS, only=[hum])


def paint_pelvis(canvas: Canvas, p: Patient) -> None:
    """Sacrum, hip bones (iliac wings, acetabula, pubic and ischial rami; ``hip_<side>``) and proximal
    femurs (``femur_<side>``)."""
    rng, w, d = p.rng, p.width, p.depth_factor
    s1 = p.v("S1")
    crest = p.v("L4").z + rng.uniform(-8, 8)
    # sacrum: a wedge curving back from S1 to the coccyx (S1's body is drawn with the spine)
    zk = [8.0, s1.z_bot, s1.z_top]
    reg = canvas.region((-55 * w, s1.y - 25, zk[0]), (55 * w, 100 * d, zk[-1]))
    if reg is not None:
        z = reg.z1d
        yc = np.interp(z, zk, [85 * d, s1.y + 8, s1.y])[:, None, None]
        hw = np.interp(z, zk, [12.0, 56 * w, 52 * w])[:, None, None]
        ht = np.interp(z, zk, [6.0, 20.0, 17.0])[:, None, None]
        q = (reg.ux / hw) ** 4 + ((reg.uy - yc) / ht) ** 2
        inside = (q < 1.0) & (reg.uz >= zk[0]) & (reg.uz <= zk[-1])
        lab = label_of("sacrum")
        reg.paint(inside, lab, T.CORTICAL)
        reg.paint(inside & (q < 0.6), None, T.CANCELLOUS)
    for side, name in ((1.0, "left"), (-1.0, "right")):
        hip = label_of(f"hip_{name}")
        acet = np.array([side * 88 * w, -5 * d, 55.0])
        z_lo = 78.0
        lo = (min(side * 25, side * 150 * w), -75 * d, z_lo), (max(side * 25, side * 150 * w), 95 * d, crest + 3)
        reg = canvas.region(*lo)
        if reg is not None:  # iliac wing: per z a shallow arc from the sacro-iliac joint to the anterior spine
            x = side * reg.ux + 5 * w
            y = reg.uy + 46 * d
            q = np.clip((reg.uz - z_lo) / (crest - z_lo), 0.0, 1.0)
            r = np.sqrt(x**2 + y**2)
            phi = np.arctan2(x, y)
            big_r = (100 + 20 * q) * w
            t = 14 - 7 * q
            wing = (np.abs(r - big_r) < t / 2) & (phi > 0.62 - 0.23 * q) & (phi < 1.15 + 0.41 * q)
            wing &= reg.uz < crest - 25 * (phi - 1.0) ** 2
            reg.paint(wing, hip, T.CORTICAL)
            reg.paint(wing & (np.abs(r - big_r) < t / 2 - 2.0), None, T.CANCELLOUS)
        reg = canvas.region(acet - 36, acet + 36)
        if reg is not None:  # acetabular cup, open laterally
            dist = np.sqrt((reg.ux - acet[0]) ** 2 + (reg.uy - acet[1]) ** 2 + (reg.uz - acet[2]) ** 2)
            cup = (dist > 24.5) & (dist < 35) & (side * (reg.ux - acet[0]) < 6) & (reg.uz < acet[2] + 32)
            reg.paint(cup, hip, T.CORTICAL)
            reg.paint(cup & (dist > 27) & (dist < 33), None, T.CANCELLOUS)
        rami = [
            ([acet + (-side * 12, -22, 5), (side * 13, -72 * d, 22)], [9.0, 8.0]),
            ([(side * 13, -72 * d, 2), (side * 13, -70 * d, 38)], [9.0, 9.0]),
            ([acet + (0, 18, -10), (side * 62 * w, 30 * d, 2)], [13.0, 12.0]),
            ([(side * 62 * w, 30 * d, 2), (side * 14, -55 * d, 3)], [7.0, 7.0]),
        ]
        for pts, radii in rami:
            paint_hollow_tube(canvas, np.array(pts, float), np.array(radii), 2.2, hip, T.CORTICAL, T.CANCELLOUS)
        fem = label_of(f"femur_{name}")
        head = Blob(tuple(acet), (23.0, 23.0, 23.0))
        paint_blob(canvas, head, fem, T.CORTICAL)
        paint_blob(canvas, head.scaled(0.88), fem, T.CANCELLOUS, only=[fem])
        gt = np.array([side * 126 * w, 8.0, 38.0])
        paint_hollow_tube(canvas, np.stack([acet, gt]), np.array([14.0, 15.0]), 2.5, fem, T.CORTICAL, T.CANCELLOUS)
        paint_blob(canvas, Blob(tuple(gt), (16, 20, 22)), fem, T.CANCELLOUS)
        shaft = np.array([gt - (side * 6, 0, 10), (side * 116 * w, -5, -220)])
        # the femoral shaft has a thick dense cortex (the skull's HU) around fatty marrow
        paint_hollow_tube(canvas, shaft, np.array([14.0, 13.0]), 5.0, fem, T.SKULL, T.MARROW)
