"""Great vessels of the phantom: aorta (root, arch, descending, abdominal) with the arch branches and
iliac arteries, superior and inferior vena cava with brachiocephalic and iliac veins, pulmonary trunk and
arteries, pulmonary veins. Their lumen brightness follows the case's contrast phase (Tissue ARTERY/VEIN)."""

from __future__ import annotations

import numpy as np

from meddiff.data.phantom.canvas import Canvas, label_of, paint_tube, smooth_path
from meddiff.data.phantom.patient import Patient
from meddiff.data.phantom.thorax import ChestLandmarks, lung_labels
from meddiff.data.phantom.tissues import Tissue as T

BODY = 118


def _front(p: Patient, name: str, gap: float) -> float:
    """y just anterior to a vertebral body, ``gap`` mm in front of it."""
    v = p.v(name)
    return v.y - v.b - gap


def _tube(canvas: Canvas, pts, radii, label: int, tissue: int, step: float = 4.0, only=None) -> np.ndarray:
    path, rad = smooth_path(pts, radii, step)
    paint_tube(canvas, path, rad, label, tissue, only=only)
    return path


def paint_great_vessels(canvas: Canvas, p: Patient, lm: ChestLandmarks) -> None:
    rng, v, w, d = p.rng, p.v, p.width, p.depth_factor
    h = lm.heart
    age = rng.uniform(0.9, 1.25)  # aortas widen and unfold with age
    arch_top = v("T3").z_top + rng.uniform(0, 12)
    # aorta: root at the heart base, ascending right-anterior, arch over the left bronchus, descending
    # left-anterior to the spine, abdominal aorta in front of the lumbar spine down to the L4 bifurcation
    pts = [
        (-6.0, h[1] + 12, h[2] + 28),
        (-18 * w, -28 * d, v("T5").z),
        (-10 * w, -18 * d, arch_top - 6),
        (2.0, -2.0, arch_top),
        (16 * w, 18.0, arch_top - 8),
        (22 * w, _front(p, "T5", 6), v("T5").z_bot),
    ]
    radii = [15.0, 15.5, 14.0, 13.0, 12.5, 12.0]
    for name, x in (("T7", 18), ("T9", 13), ("T11", 8), ("L1", 5), ("L3", 4)):
        pts.append((x * w, _front(p, name, 12.0), v(name).z))
        radii.append(11.5 if name[0] == "T" else 10.0)
    bif = np.array([3.0, _front(p, "L4", 10.0), v("L4").z])
    pts.append(tuple(bif))
    radii.append(9.0)
    aorta = _tube(canvas, pts, np.array(radii) * age, label_of("aorta"), T.ARTERY)
    _paint_calcified_plaques(
        canvas,
        rng,
        aorta,
        np.interp(np.arange(len(aorta)), np.linspace(0, len(aorta) - 1, len(radii)), np.array(radii) * age),
        int(rng.poisson(12 * (age - 0.85))),
    )
    for s, name in ((1.0, "left"), (-1.0, "right")):
        iliac = [
            tuple(bif),
            (s * 38 * w, _front(p, "L5", 4.0), v("S1").z_top),
            (s * 66 * w, -22 * d, 85.0),
            (s * 82 * w, -42 * d, 25.0),
        ]
        _tube(
            canvas,
            iliac,
            [6.0, 5.5, 5.0, 4.5],
            label_of(f"iliac_artery_{name}"),
            T.ARTERY,
            only=[BODY, label_of(f"iliopsoas_{name}")],
        )
    # arch branches
    top = aorta[np.argmax(aorta[:, 2])]
    t1 = v("T1").z_top
    bct = _tube(
        canvas, [top + (-10, -8, -2), (-20 * w, -14, t1 - 8)], [6.5, 6.0], label_of("brachiocephalic_trunk"), T.ARTERY
    )
    split = bct[-1]
    _tube(
        canvas,
        [split, (-45 * w, 0, t1 + 4), (-95 * w, 12, t1 - 4)],
        [4.5, 4.5, 4.0],
        label_of("subclavian_artery_right"),
        T.ARTERY,
    )
    _tube(
        canvas,
        [top + (12, 8, -2), (32 * w, 8, t1 + 6), (95 * w, 12, t1 - 4)],
        [4.5, 4.5, 4.0],
        label_of("subclavian_artery_left"),
        T.ARTERY,
    )
    for s, name, start in ((-1.0, "right", split), (1.0, "left", top + (2, -2, 0))):
        cca = [start, (s * 24 * w, -10.0, v("C7").z), (s * 26 * w, -4.0, v("C4").z)]
        _tube(canvas, cca, [4.2, 4.0, 4.0], label_of(f"common_carotid_artery_{name}"), T.ARTERY, only=[BODY])
    # veins: brachiocephalic -> superior vena cava -> right atrium; inferior vena cava from the iliac veins
    svc_top = np.array([-28.0 * w, -12.0, v("T3").z])
    _tube(canvas, [svc_top, (-30 * w, -8.0, h[2] + 45)], [9.0, 9.5], label_of("superior_vena_cava"), T.VEIN)
    _tube(
        canvas,
        [svc_top, (-34 * w, -12.0, t1), (-38 * w, -2.0, t1 + 20)],
        [8.0, 7.5, 7.0],
        label_of("brachiocephalic_vein_right"),
        T.VEIN,
        only=[BODY],
    )
    _tube(
        canvas,
        [svc_top, (0.0, -34.0, v("T2").z_bot), (34 * w, -12.0, t1), (38 * w, -2.0, t1 + 20)],
        [7.0, 6.5, 6.5, 7.0],
        label_of("brachiocephalic_vein_left"),
        T.VEIN,
        only=[BODY],
    )
    conf = np.array([-14.0, _front(p, "L5", 6.0), v("L5").z_top])
    ivc = [
        (-40 * w, h[1] + 25, h[2] - 30),
        (-26 * w, _front(p, "T11", 22.0), p.dome_right - 30),
        (-24 * w, _front(p, "T12", 14.0), v("T12").z),
        (-22 * w, _front(p, "L2", 12.0), v("L2").z),
        tuple(conf),
    ]
    r_ivc = rng.uniform(9.0, 13.0)
    _tube(canvas, ivc, [r_ivc + 3, r_ivc + 1, r_ivc, r_ivc, r_ivc], label_of("inferior_vena_cava"), T.VEIN)
    for s, name in ((1.0, "left"), (-1.0, "right")):
        iv = [
            tuple(conf),
            (s * 36 * w, _front(p, "L5", -2.0), v("S1").z_top - 15),
            (s * 70 * w, -18 * d, 80.0),
            (s * 84 * w, -34 * d, 25.0),
        ]
        _tube(canvas, iv, [8.0, 7.5, 7.0, 6.5], label_of(f"iliac_vena_{name}"), T.VEIN, only=[BODY])
    # pulmonary trunk and arteries (blood of the right heart; no label class of their own), pulmonary veins
    lungs = lung_labels()
    bif_pa = lm.carina + (12.0, -22.0, -4.0)
    _tube(
        canvas,
        [h + (18.0, -40.0, 30.0), h + (20.0, -30.0, 52.0), bif_pa],
        [13.0, 13.0, 12.0],
        BODY,
        T.BLOOD_RIGHT,
        only=[BODY, *lungs],
    )
    for hilum in (lm.hilum_left, lm.hilum_right):
        paint_tube(canvas, np.stack([bif_pa, hilum]), np.array([10.0, 8.0]), BODY, T.BLOOD_RIGHT, only=[BODY, *lungs])
    la = h + (4.0, 40.0, 22.0)
    for hilum in (lm.hilum_left, lm.hilum_right):
        for dz in (-12.0, 8.0):
            end = hilum + (0.0, 8.0, dz - 18.0)
            _tube(
                canvas,
                [la + (np.sign(hilum[0]) * 18.0, 4.0, dz), end],
                [6.5, 5.5],
                label_of("pulmonary_vein"),
                T.BLOOD_LEFT,
                only=[BODY, *lungs],
            )


def _paint_calcified_plaques(
    canvas: Canvas, rng: np.random.Generator, path: np.ndarray, radii: np.ndarray, n: int
) -> None:
    """Small calcified plaques in the aortic wall (more with age), labelled aorta."""
    aorta = label_of("aorta")
    for _ in range(n):
        i = int(rng.integers(1, len(path) - 1))
        axis = path[i + 1] - path[i - 1]
        ortho = np.cross(axis, rng.normal(size=3))
        ortho /= np.linalg.norm(ortho) + 1e-9
        c = path[i] + ortho * (radii[i] - 1.0)
        r = rng.uniform(1.2, 2.5)
        paint_tube(
            canvas,
            np.stack([c, c + axis / (np.linalg.norm(axis) + 1e-9) * rng.uniform(1, 6)]),
            np.array([r, r]),
            None,
            T.CORTICAL,
            only=[aorta],
        )
