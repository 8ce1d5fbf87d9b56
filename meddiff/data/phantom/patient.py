"""The random patient behind a phantom case: skeleton levels, body outline, diaphragm, habitus, contrast.

Everything is in the patient frame of :mod:`meddiff.data.phantom.canvas` (mm, LPS, z = 0 at the bottom of
the pubic symphysis). The spine is built first, vertebra by vertebra from S1 upwards with adult body and
disc heights, and every other structure is placed relative to it, so head, chest and abdomen of one
patient always fit together. Sizes are typical adult values (Gray's Anatomy ranges) scaled per patient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from meddiff.data.phantom.canvas import Region
from meddiff.data.phantom.tissues import PHASES

SPINE_LEVELS: tuple[str, ...] = (
    ("S1", "L5", "L4", "L3", "L2", "L1")
    + tuple(f"T{i}" for i in range(12, 0, -1))
    + tuple(f"C{i}" for i in range(7, 0, -1))
)
"""Vertebrae from caudal to cranial; names match TotalSegmentator's ``vertebrae_<name>``."""

# (vertebral body height, disc height above it, body half-width, body half-depth) in mm, adult averages
_LUMBAR = (27.0, 9.5, 24.0, 17.0)
_CERVICAL = (13.0, 4.0, 9.5, 8.0)


def _vertebra_dims(name: str) -> tuple[float, float, float, float]:
    if name == "S1":
        return 30.0, 10.0, 25.0, 17.0
    if name[0] == "L":
        return _LUMBAR
    if name[0] == "T":
        i = int(name[1:])  # T1 small ... T12 large
        f = (i - 1) / 11
        return 17.0 + 7.0 * f, 4.0 + 2.0 * f, 15.0 + 6.0 * f, 12.0 + 4.5 * f
    if name == "C2":
        return 20.0, 4.0, 9.0, 8.0
    if name == "C1":
        return 10.0, 3.0, 9.0, 6.0  # the atlas has no body; this is its anterior arch
    return _CERVICAL


# spine body-centre y (mm, + posterior) along the column: lordosis / kyphosis
_SPINE_Y = {
    "S1": 55,
    "L5": 35,
    "L4": 26,
    "L3": 22,
    "L2": 25,
    "L1": 32,
    "T12": 40,
    "T10": 50,
    "T8": 55,
    "T6": 57,
    "T4": 55,
    "T2": 50,
    "T1": 45,
    "C7": 38,
    "C5": 30,
    "C3": 28,
    "C1": 32,
}


# muscle-wall thickness factor vs angle from the anterior midline (rad): abdomen (linea alba, rectus, gap,
# obliques, flank, back) and chest (sternum, pectorals, axilla, serratus, back)
_PHI_ABD = [0.0, 0.03, 0.07, 0.55, 0.62, 0.72, 1.5, 2.2, 2.6, np.pi]
_MUSCLE_ABD = [0.0, 0.0, 1.1, 1.0, 0.15, 0.9, 0.9, 0.8, 0.6, 0.6]
_PHI_CHEST = [0.0, 0.15, 0.4, 0.9, 1.3, 1.8, 2.4, np.pi]
_MUSCLE_CHEST = [0.5, 1.3, 1.8, 1.3, 0.5, 0.6, 0.9, 0.7]


@dataclass(frozen=True)
class Vertebra:
    name: str
    z_bot: float
    z_top: float
    y: float  # body centre, + posterior
    a: float  # body half-width
    b: float  # body half-depth

    @property
    def z(self) -> float:
        return 0.5 * (self.z_bot + self.z_top)


@dataclass
class Patient:
    """One random adult. ``rng`` is the stream every anatomy module draws its own variation from."""

    rng: np.random.Generator
    phase: str
    male: bool
    oral_contrast: bool
    vertebrae: dict[str, Vertebra]
    z_fm: float  # foramen magnum
    z_vertex: float
    dome_right: float
    dome_left: float
    head_pitch: float  # degrees, chin down > 0
    width: float  # lateral habitus factor
    depth_factor: float  # antero-posterior habitus factor
    fat: dict[str, float]  # subcutaneous fat (mm) at "pelvis", "abdomen", "chest", "neck"
    organ_scale: float
    _profile: tuple[np.ndarray, ...] = field(repr=False, default=())

    def v(self, name: str) -> Vertebra:
        return self.vertebrae[name]

    def spine_y(self, z: np.ndarray | float) -> np.ndarray:
        names = [n for n in SPINE_LEVELS if n in _SPINE_Y]
        zs = [self.v(n).z for n in names]
        return np.interp(z, zs, [_SPINE_Y[n] * self.depth_factor for n in names]).astype(np.float32)

    def profile(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Body outline per z: lean half-axes (a: lateral, ba/bp: anterior/posterior of the centre cy),
        subcutaneous fat and muscle-wall thickness; a = 0 where there is no trunk or neck (above the neck,
        the head module draws the outline)."""
        zk, *cols = self._profile
        keys = ("a", "ba", "bp", "cy", "fat", "muscle")
        return {
            k: np.interp(z, zk, c, left=c[0], right=0.0 if k == "a" else c[-1]).astype(np.float32)
            for k, c in zip(keys, cols)
        }

    def _polar(self, reg: Region) -> tuple[np.ndarray, np.ndarray]:
        """Depth (mm) under the skin along the ray from the body axis (< 0 outside) and the cosine of the
        ray's angle from the anterior midline."""
        p = self.profile(reg.z1d)
        out = p["fat"] + np.float32(2.0)  # skin
        inv_a = (1.0 / np.maximum(p["a"] + out, 1e-3)).astype(np.float32)[:, None, None]
        inv_ba = (1.0 / (p["ba"] + out))[:, None, None]
        inv_bp = (1.0 / (p["bp"] + out))[:, None, None]
        vx = reg.ux
        vy = reg.uy - p["cy"][:, None, None]
        inv_b = np.where(vy < 0, inv_ba, inv_bp)
        rho = np.sqrt((vx * inv_a) ** 2 + (vy * inv_b) ** 2)
        r = np.sqrt(vx * vx + vy * vy)
        d = r / np.maximum(rho, np.float32(1e-6)) - r
        d[np.broadcast_to((p["a"] <= 1.0)[:, None, None], d.shape)] = -1e6
        return d, -vy / np.maximum(r, np.float32(1e-3))

    def depth(self, reg: Region) -> np.ndarray:
        """Depth (mm) of each voxel under the skin along the ray from the body axis; < 0 outside."""
        return self._polar(reg)[0]

    def wall(self, reg: Region) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(depth, subcutaneous fat thickness, fat + muscle-wall thickness) per voxel, mm. The muscle wall
        follows the anatomy around the trunk: rectus sheaths beside the linea alba and thinner obliques in
        the abdomen, thick pectorals and thin serratus in the chest; the fat is thicker anteriorly."""
        d, cos_ant = self._polar(reg)
        prof = self.profile(reg.z1d)
        phi = np.arccos(np.clip(cos_ant, -1.0, 1.0))
        v = self.v
        w_chest = np.interp(reg.z1d, [v("T12").z, v("T9").z], [0.0, 1.0]).astype(np.float32)[:, None, None]
        w_neck = np.interp(reg.z1d, [v("T1").z, v("C7").z_top], [0.0, 1.0]).astype(np.float32)[:, None, None]
        f_abd = np.interp(phi, _PHI_ABD, _MUSCLE_ABD).astype(np.float32)
        f_chest = np.interp(phi, _PHI_CHEST, _MUSCLE_CHEST).astype(np.float32)
        trunk = np.float32(1.0) - w_neck
        factor = ((1 - w_chest) * f_abd + w_chest * f_chest) * trunk + w_neck
        fat = prof["fat"][:, None, None] * (1.0 + 0.25 * cos_ant * trunk)
        return d, fat, fat + prof["muscle"][:, None, None] * factor

    def cage(self, z: np.ndarray | float) -> dict[str, np.ndarray]:
        """Centre line of the rib cage per z (centred on the body axis): lateral half-axis A, anterior and
        posterior half-axes Ba/Bp (mm). It follows the chest wall inside the muscle layer and narrows to the
        thoracic inlet above T4; the lungs fill it up to a pleural gap."""
        z = np.asarray(z, float)
        p = self.profile(z)
        v, w = self.v, self.width
        zk = [v("T5").z, v("T4").z, v("T3").z, v("T2").z, v("T1").z, v("T1").z_top + 25.0]
        cap_a = np.interp(z, zk, np.array([400, 135, 118, 100, 80, 70]) * w)
        cap_b = np.interp(z, zk, np.array([400, 110, 95, 82, 70, 60]) * self.depth_factor)
        out = {
            "A": np.minimum(p["a"] - 0.5 * p["muscle"], cap_a),
            "Ba": np.minimum(p["ba"] - 0.5 * p["muscle"] - 2.0, cap_b),
            "Bp": np.minimum(p["bp"] - 0.5 * p["muscle"], cap_b + 15.0),
        }
        return {k: a.astype(np.float32) for k, a in out.items()}

    def diaphragm(self, ux: np.ndarray, uy: np.ndarray) -> np.ndarray:
        """z (mm) of the diaphragm surface: two domes, the right higher, dropping into the posterior
        costophrenic recesses; lungs lie above it, the abdominal organs below."""
        f32 = np.float32
        ry = np.where(uy < -10.0, f32(115.0 * self.depth_factor), f32(72.0 * self.depth_factor))
        yy = ((uy + f32(10.0)) / ry) ** 2
        w = f32(95.0 * self.width)
        right = f32(self.dome_right) - f32(55.0) * (((ux + f32(55.0 * self.width)) / w) ** 2 + yy)
        left = f32(self.dome_left) - f32(55.0) * (((ux - f32(60.0 * self.width)) / w) ** 2 + yy)
        return np.maximum(np.maximum(right, left), f32(self.dome_right - 130.0))


def _build_spine(rng: np.random.Generator, height: float, depth_factor: float) -> dict[str, Vertebra]:
    z = 110.0 * height  # top of S1 above the bottom of the pubic symphysis
    out: dict[str, Vertebra] = {}
    names = [n for n in SPINE_LEVELS if n in _SPINE_Y]
    for name in SPINE_LEVELS:
        h, disc, a, b = _vertebra_dims(name)
        s = height * rng.uniform(0.95, 1.05)
        z_bot = (z - 30.0 * height) if name == "S1" else z + disc * height
        z_top = z if name == "S1" else z_bot + h * s
        out[name] = Vertebra(name, z_bot, z_top, 0.0, a * rng.uniform(0.93, 1.07), b * rng.uniform(0.93, 1.07))
        z = z_top
    zs = [out[n].z for n in names]
    ys = [_SPINE_Y[n] * depth_factor for n in names]
    return {n: Vertebra(v.name, v.z_bot, v.z_top, float(np.interp(v.z, zs, ys)), v.a, v.b) for n, v in out.items()}


def sample_patient(rng: np.random.Generator) -> Patient:
    """Draw a patient: habitus, skeleton, diaphragm, fat, contrast phase, oral contrast, sex, head pose."""
    height = rng.normal(1.0, 0.04)
    width = float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15))
    depth_factor = float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15))
    obesity = rng.beta(2.0, 3.0)
    fat = {
        "pelvis": 10 + 40 * obesity + rng.uniform(0, 5),
        "abdomen": 6 + 40 * obesity + rng.uniform(0, 5),
        "chest": 5 + 22 * obesity + rng.uniform(0, 4),
        "neck": 3 + 10 * obesity,
    }
    vert = _build_spine(rng, height, depth_factor)
    z_fm = vert["C1"].z_top + 6.0
    z_vertex = z_fm + 135.0 * height * rng.uniform(0.95, 1.05)
    dome_right = vert["T9"].z + rng.uniform(-15, 15)
    dome_left = dome_right - rng.uniform(8, 25)
    patient = Patient(
        rng=rng,
        phase=str(rng.choice(PHASES, p=[0.3, 0.25, 0.45])),
        male=bool(rng.random() < 0.5),
        oral_contrast=bool(rng.random() < 0.25),
        vertebrae=vert,
        z_fm=z_fm,
        z_vertex=z_vertex,
        dome_right=dome_right,
        dome_left=dome_left,
        head_pitch=float(rng.normal(0.0, 6.0)),
        width=width,
        depth_factor=depth_factor,
        fat=fat,
        organ_scale=float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.15)),
    )
    patient._profile = _body_profile(patient, rng)
    return patient


def _body_profile(p: Patient, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Key points (z, a, ba, bp, cy, fat, muscle) of the lean outline, from the pelvic floor to the skull base."""
    v, w, d = p.v, p.width, p.depth_factor
    f = p.fat
    sh = rng.uniform(0.95, 1.08)  # shoulder breadth
    rows = [
        (-40.0, 150 * w, 85 * d, 95 * d, 5, f["pelvis"], 14),
        (0.0, 158 * w, 90 * d, 100 * d, 5, f["pelvis"], 14),
        (60.0, 160 * w, 95 * d, 100 * d, 5, f["pelvis"], 14),
        (v("L5").z, 155 * w, 100 * d, 90 * d, 0, f["pelvis"], 13),
        (v("L4").z, 148 * w, 100 * d, 85 * d, 0, 0.5 * (f["pelvis"] + f["abdomen"]), 12),
        (v("L3").z, 140 * w, 105 * d, 85 * d, 0, f["abdomen"], 12),
        (v("L1").z, 140 * w, 105 * d, 88 * d, 0, f["abdomen"], 12),
        (v("T11").z, 145 * w, 105 * d, 95 * d, 0, 0.5 * (f["abdomen"] + f["chest"]), 12),
        (v("T9").z, 150 * w, 105 * d, 100 * d, 0, f["chest"], 13),
        (v("T6").z, 150 * w, 100 * d, 105 * d, 0, f["chest"], 15),
        (v("T4").z, 152 * w, 95 * d, 105 * d, 0, f["chest"], 16),
        (v("T2").z, 160 * w * sh, 85 * d, 100 * d, 2, f["chest"], 18),
        (v("T1").z_top, 168 * w * sh, 80 * d, 95 * d, 5, 0.8 * f["chest"], 20),
        (v("C7").z_top + 4, 130 * w, 70 * d, 85 * d, 12, f["neck"], 24),
        (v("C6").z_top, 75 * w, 60 * d, 70 * d, 18, f["neck"], 26),
        (v("C5").z, 56 * w, 55 * d, 62 * d, 20, f["neck"], 26),
        (v("C2").z, 55 * w, 50 * d, 64 * d, 20, f["neck"], 26),
        (p.z_fm + 10.0, 58 * w, 52 * d, 66 * d, 16, f["neck"], 26),
    ]
    arr = np.array(rows, float)
    return tuple(arr[:, i] for i in range(arr.shape[1]))
