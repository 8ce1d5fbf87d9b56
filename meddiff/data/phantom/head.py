"""Head and neck of the phantom: scalp, skull with diploe and skull base, brain (grey / white matter,
ventricles, brainstem, cerebellum), eyes in bony orbits, paranasal sinuses, mandible and teeth, tongue,
salivary glands, pharynx and larynx, thyroid, internal carotids and jugular veins.

Head structures are placed in a head frame pivoting at the foramen magnum, so the head can be tilted
(chin up / down) per patient as in real scans.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from meddiff.data.phantom.canvas import (
    Blob,
    Canvas,
    Region,
    label_of,
    paint_blob,
    paint_hollow_tube,
    paint_tube,
    rotation,
    smooth_path,
)
from meddiff.data.phantom.patient import Patient
from meddiff.data.phantom.skeleton import canal_centre
from meddiff.data.phantom.tissues import Tissue as T

BODY = 118


class HeadFrame:
    """Head coordinates: the patient frame rotated by the head pitch about the foramen magnum ``pivot``."""

    def __init__(self, pivot: Sequence[float], pitch_deg: float) -> None:
        self.pivot = np.asarray(pivot, float)
        self.m = rotation(pitch=pitch_deg).T  # column convention: u = pivot + m @ (h - pivot)

    def point(self, h: Sequence[float]) -> np.ndarray:
        return self.pivot + self.m @ (np.asarray(h, float) - self.pivot)

    def points(self, hs) -> np.ndarray:
        return np.array([self.point(h) for h in hs])

    def blob(self, center, radii, rot=None, *, rng=None, amp: float = 0.0) -> Blob:
        rot = np.eye(3) if rot is None else rot
        rot = rot @ self.m.T
        if rng is not None:
            return Blob.random(rng, self.point(center), radii, rot, amp)
        return Blob(tuple(self.point(center)), tuple(map(float, radii)), rot)

    def local(self, reg: Region) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = (reg.ux - self.pivot[0], reg.uy - self.pivot[1], reg.uz - self.pivot[2])
        m = self.m  # h = pivot + m.T @ (u - pivot)
        return tuple(self.pivot[i] + m[0, i] * d[0] + m[1, i] * d[1] + m[2, i] * d[2] for i in range(3))


def paint_head(canvas: Canvas, p: Patient) -> None:
    """Everything above the shoulders that is not spine or great vessels."""
    rng, w = p.rng, p.width
    yfm, _ = canal_centre(p.v("C1"))
    zfm = p.z_fm
    hf = HeadFrame((0.0, yfm, zfm), p.head_pitch)
    if canvas.z_range[1] < p.v("C7").z:
        return
    # brain envelope: top 14 mm under the vertex
    br = np.array([67.0 * w, 84.0, 62.0]) * rng.uniform(0.94, 1.06)
    bc = np.array([0.0, yfm - 31.0, p.z_vertex - 14.0 - br[2]])
    scalp = rng.uniform(4.0, 7.0)
    skull_t = rng.uniform(6.0, 8.5)
    # outlines: cranium, face, nose; skin, thin fat, soft tissue
    cranium = hf.blob(bc, br + 3.0 + skull_t + scalp)
    face = hf.blob((0.0, yfm - 68.0, zfm - 18.0), (64 * w, 70.0, 78.0), rotation(pitch=-15), rng=rng, amp=0.03)
    nose = hf.blob((0.0, yfm - 140.0, zfm + 5.0), (12.0, 16.0, 25.0), rotation(pitch=-20))
    for blob in (cranium, face, nose):
        paint_blob(canvas, blob, BODY, T.SKIN)
    for blob in (cranium, face, nose):
        paint_blob(canvas, blob.scaled(0.975), BODY, T.FAT)
    paint_blob(canvas, face.scaled(0.9), BODY, T.MUSCLE)
    paint_blob(canvas, cranium.scaled(1.0 - 3.0 / cranium.radii[2]), BODY, T.MUSCLE)
    _paint_face(canvas, p, hf, yfm, zfm)
    _paint_neck(canvas, p, hf, yfm, zfm)
    _paint_skull_and_brain(canvas, p, hf, bc, br, skull_t, yfm, zfm)


def _paint_face(canvas: Canvas, p: Patient, hf: HeadFrame, yfm: float, zfm: float) -> None:
    """Face structures, placed relative to the foramen magnum (y grows posteriorly: face at yfm - 60..160)."""
    rng, w = p.rng, p.width
    skull = label_of("skull")
    for c, r in (((52 * w, yfm - 35, zfm - 20), (14, 22, 26)), ((36 * w, yfm - 85, zfm - 68), (11, 15, 11))):
        for s in (1, -1):  # parotid and submandibular glands
            paint_blob(canvas, hf.blob((s * c[0], c[1], c[2]), r, rng=rng, amp=0.06), BODY, T.GLAND)
    paint_blob(canvas, hf.blob((0, yfm - 80, zfm - 45), (26 * w, 34, 20), rng=rng, amp=0.05), BODY, T.MUSCLE)  # tongue
    for s in (1, -1):  # orbit (bony cone open anteriorly), orbital fat, globe, lens; maxillary sinus; zygoma
        eye = np.array([s * 31 * w, yfm - 113.0, zfm + 32.0])
        orbit = hf.blob(eye + (0, 12, 0), (19, 27, 18))
        front = hf.point(eye)[1] - 6.0
        paint_blob(canvas, orbit.scaled(1.12), skull, T.SKULL, clip=lambda reg, f=front: reg.uy > f)
        paint_blob(canvas, orbit, BODY, T.FAT)
        paint_blob(canvas, hf.blob(eye, (12.0, 12.0, 12.0)), BODY, T.EYE)
        paint_blob(canvas, hf.blob(eye - (0, 10, 0), (4.5, 2.0, 4.5)), BODY, T.LENS)
        sinus = hf.blob((s * 29 * w, yfm - 90.0, zfm + 4.0), np.array([15, 18, 17]) * rng.uniform(0.8, 1.15))
        paint_blob(canvas, sinus.scaled(1.15), skull, T.SKULL)
        paint_blob(canvas, sinus, BODY, T.AIR)
        zyg = hf.points(
            [(s * 48 * w, yfm - 105, zfm + 14), (s * 64 * w, yfm - 70, zfm + 10), (s * 60 * w, yfm - 40, zfm + 8)]
        )
        paint_tube(canvas, zyg, np.array([5.0, 4.0, 4.0]), skull, T.SKULL)
    nasal = hf.blob((0, yfm - 102, zfm + 6), (12, 37, 27))  # nasal cavity with its septum
    paint_blob(canvas, nasal.scaled(1.12), skull, T.SKULL)
    paint_blob(canvas, nasal, BODY, T.AIR)
    reg = canvas.region(*nasal.bounds())
    if reg is not None:
        hx, _, _ = hf.local(reg)
        reg.paint((np.abs(hx) < 1.2) & (nasal.rho(reg) < 1.0), skull, T.CORTICAL)
    paint_blob(canvas, hf.blob((0, yfm - 92, zfm - 20), (19 * w, 25, 4)), skull, T.SKULL)  # hard palate
    # mandible (body arch and rami), lower and upper teeth
    arch = [
        (s * x * w, yfm + y, zfm + z)
        for s, x, y, z in [
            (1, 50, -30, -2),
            (1, 48, -42, -56),
            (1, 42, -60, -66),
            (1, 24, -104, -74),
            (1, 0, -120, -77),
            (-1, 24, -104, -74),
            (-1, 42, -60, -66),
            (-1, 48, -42, -56),
            (-1, 50, -30, -2),
        ]
    ]
    path, rad = smooth_path(hf.points(arch), [6, 7, 8, 8, 8, 8, 8, 7, 6], 4.0)
    paint_hollow_tube(canvas, path, rad, 2.5, skull, T.SKULL, T.CANCELLOUS)
    for dz, dy in ((-62.0, 0.0), (-28.0, 4.0)):
        teeth = [
            (s * x * w, yfm + y + dy, zfm + dz)
            for s, x, y in [
                (1, 36, -66),
                (1, 31, -86),
                (1, 20, -104),
                (1, 0, -112),
                (-1, 20, -104),
                (-1, 31, -86),
                (-1, 36, -66),
            ]
        ]
        tpath, trad = smooth_path(hf.points(teeth), np.full(7, 4.5), 3.0)
        paint_tube(canvas, tpath, trad, skull, T.TEETH)
    sphenoid = hf.blob((0, yfm - 58, zfm + 12), np.array([12, 11, 10]) * rng.uniform(0.7, 1.2))
    paint_blob(canvas, sphenoid, BODY, T.AIR)


def _paint_neck(canvas: Canvas, p: Patient, hf: HeadFrame, yfm: float, zfm: float) -> None:
    rng, w = p.rng, p.width
    v = p.v
    # pharynx -> larynx (air, body) and the thyroid cartilage; the trachea itself is drawn with the chest
    airway = [
        hf.point((0, yfm - 55, zfm + 2)),
        hf.point((0, yfm - 44, zfm - 20)),
        (0, v("C2").y - 22, v("C2").z),
        (0, v("C4").y - 30, v("C4").z),
        (0, -18.0, v("C6").z),
        (0, -20.0, v("C7").z_bot),
    ]
    path, rad = smooth_path(airway, [9, 8, 8 * rng.uniform(0.6, 1.1), 7, 7.5, 8], 3.0)
    larynx_c = (0.0, v("C5").y - 34, v("C5").z)
    paint_blob(canvas, Blob(larynx_c, (19 * w, 17, 20)), BODY, T.CARTILAGE)
    paint_blob(canvas, Blob(larynx_c, (16 * w, 14, 20)), BODY, T.MUSCLE)
    paint_tube(canvas, path, rad, BODY, T.AIR, only=[BODY])
    thy = label_of("thyroid_gland")
    zt = 0.5 * (v("C7").z + v("T1").z)
    sc = rng.uniform(0.8, 1.25)
    for s in (1, -1):
        paint_blob(
            canvas,
            Blob.random(rng, (s * 17 * w, -14.0, zt), np.array([8, 10, 22]) * sc, amp=0.06),
            thy,
            T.THYROID,
            only=[BODY],
        )
    paint_blob(canvas, Blob((0.0, -29.0, v("C7").z_bot), (11, 5, 6)), thy, T.THYROID, only=[BODY])
    # internal carotids and jugular veins up to the skull base (common carotids come from the arch)
    for s in (1, -1):
        ica = [(s * 26 * w, -4, v("C4").z), (s * 24 * w, 10, v("C2").z), hf.point((s * 22, yfm - 25, zfm + 12))]
        paint_tube(canvas, np.array(ica), np.array([3.5, 3.0, 2.8]), BODY, T.ARTERY, only=[BODY])
        jug = [(s * 36 * w, -2, v("T1").z_top), (s * 38 * w, 4, v("C4").z), hf.point((s * 34 * w, yfm - 12, zfm + 2))]
        r = rng.uniform(4.5, 8.0)
        paint_tube(canvas, np.array(jug), np.array([r, r, 0.8 * r]), BODY, T.VEIN, only=[BODY])


def _paint_skull_and_brain(
    canvas: Canvas, p: Patient, hf: HeadFrame, bc, br, skull_t: float, yfm: float, zfm: float
) -> None:
    rng = p.rng
    skull, brain = label_of("skull"), label_of("brain")
    outer = hf.blob(bc, br + 3.0 + skull_t)
    reg = canvas.region(*outer.bounds(pad=12.0))
    if reg is None:
        return
    hx, hy, hz = hf.local(reg)
    # brain floor: anterior fossa over the orbits, middle fossa, posterior fossa above the foramen
    floor = zfm + np.interp(hy - yfm, [-120, -80, -60, -35, -15, 0, 30, 60], [52, 45, 22, 18, 10, -6, -8, 0])
    r_out = outer.rho(reg)
    r_in = hf.blob(bc, br + 3.0).rho(reg)
    r_d1 = hf.blob(bc, br + 3.0 + 0.3 * skull_t).rho(reg)
    r_d2 = hf.blob(bc, br + 3.0 + 0.7 * skull_t).rho(reg)
    foramen = hx**2 + (hy - yfm) ** 2 < 15.0**2
    vault = (r_out < 1.0) & (r_in >= 1.0) & (hz > floor - 12.0)
    # skull base: thin orbital plates in front, thick petrous ridges in the middle, occiput behind
    base_t = np.interp(hy - yfm, [-120, -70, -45, -20, 10, 40], [4.0, 5.0, 9.0, 15.0, 10.0, 8.0])
    base = (r_out < 1.0) & (hz <= floor) & (hz > floor - base_t) & ~foramen & (hy - yfm > -120)
    reg.paint(vault | base, skull, T.SKULL)
    reg.paint(vault & (r_d1 >= 1.0) & (r_d2 < 1.0), None, T.DIPLOE)
    reg.paint(base & (hz < floor - 2.5) & (hz > floor - base_t + 2.5), None, T.DIPLOE)
    inside = (r_in < 1.0) & (hz > floor)
    reg.paint(inside, brain, T.CSF)
    r_brain = hf.blob(bc, br, rng=rng, amp=0.02).rho(reg)
    reg.paint(inside & (r_brain < 1.0) & (hz > floor + 2.0), brain, T.GREY_MATTER)
    wm = hf.blob(bc + (0, 0, 4), br * 0.78, rng=rng, amp=0.1).rho(reg)
    reg.paint(inside & (wm < 1.0) & (hz > floor + 14.0), brain, T.WHITE_MATTER)
    reg.paint(inside & (np.abs(hx) < 0.9) & (hz > bc[2] - 10.0) & (r_brain < 0.97), brain, T.MUSCLE)  # falx
    # brainstem, cerebellum, deep grey nuclei, ventricles
    stem = hf.points([(0, yfm - 4, zfm - 2), (0, yfm - 14, zfm + 22), (0, yfm - 26, zfm + 42)])
    paint_tube(canvas, stem, np.array([10.0, 12.0, 13.0]), brain, T.WHITE_MATTER)
    for s in (1, -1):
        paint_blob(
            canvas,
            hf.blob((s * 26, yfm + 14, zfm + 16), (27, 24, 19), rng=rng, amp=0.05),
            brain,
            T.GREY_MATTER,
            only=[brain],
        )
        paint_blob(canvas, hf.blob((s * 18, yfm + 12, zfm + 18), (10, 9, 8)), brain, T.WHITE_MATTER, only=[brain])
        for c, r in (((s * 12, -4, 0), (9, 15, 10)), ((s * 22, -20, 6), (7, 14, 10))):
            paint_blob(canvas, hf.blob(bc + c, r), brain, T.GREY_MATTER, only=[brain])
    vs = rng.uniform(0.7, 1.6)  # ventricle size grows with age / atrophy
    for s in (1, -1):
        lv = [
            bc + (s * 4, -34, 4),
            bc + (s * 8, -5, 14),
            bc + (s * 12, 25, 10),
            bc + (s * 22, 40, -12),
            bc + (s * 28, 10, -26),
        ]
        path, rad = smooth_path(hf.points(lv), np.array([4.0, 5.5, 5.0, 3.5, 2.5]) * vs, 3.0)
        paint_tube(canvas, path, rad, brain, T.CSF, only=[brain])
    paint_blob(canvas, hf.blob(bc + (0, 2, -10), (1.5 * vs, 12, 8)), brain, T.CSF, only=[brain])
    paint_blob(canvas, hf.blob((0, yfm + 2, zfm + 14), (6, 4, 6)), brain, T.CSF, only=[brain])
