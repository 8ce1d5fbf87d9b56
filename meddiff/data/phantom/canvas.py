"""Render canvas of the demo phantom and the primitives its anatomy is drawn with.

The patient frame ``u`` is in millimetres, LPS like DICOM: x towards the patient's left, y posterior,
z superior, with z = 0 at the bottom of the pubic symphysis. A :class:`Canvas` is a voxel grid (the scan's
render grid, arrays ordered (Z, Y, X)) holding three uint8 maps that shapes are painted into in order:
``label`` (the label space of :mod:`meddiff.labels`), ``tissue`` (a :class:`~meddiff.data.phantom.tissues.Tissue`,
later turned into HU) and ``lesion`` (``LESION_CLASSES``). A smooth random :class:`Warp` (rotation about z,
lateral and antero-posterior sway along z) maps grid points to the patient frame, so every organ drawn in
the patient frame is deformed the same way and neighbours stay consistent.

Shapes are evaluated only inside their bounding box (:meth:`Canvas.region`); everything is hand-written
numpy because no library rasterises implicit anatomy (blobby ellipsoids, tubes along curves) into a grid.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from meddiff.labels import class_index

Array = np.ndarray


def label_of(name: str) -> int:
    """Label-space index of a TotalSegmentator ``total`` class name (``body`` -> 118)."""
    return class_index()[name]


@dataclass(frozen=True)
class Warp:
    """Grid -> patient frame: ``u_xy = R(angle) @ (x, y) + (dx[k], dy[k])``, ``u_z = z`` (k = slice index)."""

    angle: float
    dx: Array  # (Z,)
    dy: Array  # (Z,)


class Canvas:
    """A render grid with its label, tissue and lesion maps, all (Z, Y, X) uint8."""

    def __init__(self, x: Array, y: Array, z: Array, warp: Warp) -> None:
        self.x = np.asarray(x, np.float32)
        self.y = np.asarray(y, np.float32)
        self.z = np.asarray(z, np.float32)
        if np.any(np.diff(self.z) <= 0) or np.any(np.diff(self.x) <= 0) or np.any(np.diff(self.y) <= 0):
            raise ValueError("canvas axes must increase")
        shape = (self.z.size, self.y.size, self.x.size)
        self.label = np.zeros(shape, np.uint8)
        self.tissue = np.zeros(shape, np.uint8)
        self.lesion = np.zeros(shape, np.uint8)
        self.warp = warp
        self.cos, self.sin = float(np.cos(warp.angle)), float(np.sin(warp.angle))
        self._dx_lo, self._dx_hi = float(warp.dx.min()), float(warp.dx.max())
        self._dy_lo, self._dy_hi = float(warp.dy.min()), float(warp.dy.max())

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.label.shape

    @property
    def z_range(self) -> tuple[float, float]:
        return float(self.z[0]), float(self.z[-1])

    def region(self, lo: Sequence[float], hi: Sequence[float]) -> Region | None:
        """The sub-grid whose patient-frame points may fall in the box [lo, hi] (mm), or None if empty."""
        k0 = int(np.searchsorted(self.z, lo[2], "left"))
        k1 = int(np.searchsorted(self.z, hi[2], "right"))
        if k0 >= k1:
            return None
        # invert u = R x + d at the box corners for the extreme shifts (over the whole scan: the sway is a
        # few mm, cheaper than per-box extremes)
        c, s = self.cos, self.sin
        corners = [
            (ux, uy)
            for ux in (lo[0] - self._dx_hi, hi[0] - self._dx_lo)
            for uy in (lo[1] - self._dy_hi, hi[1] - self._dy_lo)
        ]
        gx = [c * ux + s * uy for ux, uy in corners]
        gy = [-s * ux + c * uy for ux, uy in corners]
        i0 = int(np.searchsorted(self.x, min(gx) - 1.0, "left"))
        i1 = int(np.searchsorted(self.x, max(gx) + 1.0, "right"))
        j0 = int(np.searchsorted(self.y, min(gy) - 1.0, "left"))
        j1 = int(np.searchsorted(self.y, max(gy) + 1.0, "right"))
        if i0 >= i1 or j0 >= j1:
            return None
        return Region(self, (slice(k0, k1), slice(j0, j1), slice(i0, i1)))

    def everywhere(self) -> Region:
        return Region(self, (slice(None), slice(None), slice(None)))


class Region:
    """A box of a :class:`Canvas`: patient-frame coordinates of its voxels and views of its maps."""

    def __init__(self, canvas: Canvas, sl: tuple[slice, slice, slice]) -> None:
        self.canvas = canvas
        self.sl = sl
        self.label = canvas.label[sl]
        self.tissue = canvas.tissue[sl]
        self.lesion = canvas.lesion[sl]
        self.shape = self.label.shape

    @functools.cached_property
    def z1d(self) -> Array:
        """(Z,) patient-frame z of the region's slices."""
        return self.canvas.z[self.sl[0]]

    @functools.cached_property
    def _xy(self) -> tuple[Array, Array]:
        c = self.canvas
        gx = c.x[self.sl[2]][None, None, :]
        gy = c.y[self.sl[1]][None, :, None]
        dx = c.warp.dx[self.sl[0]].astype(np.float32)[:, None, None]
        dy = c.warp.dy[self.sl[0]].astype(np.float32)[:, None, None]
        return c.cos * gx - c.sin * gy + dx, c.sin * gx + c.cos * gy + dy

    @property
    def ux(self) -> Array:
        return self._xy[0]

    @property
    def uy(self) -> Array:
        return self._xy[1]

    @functools.cached_property
    def uz(self) -> Array:
        return np.broadcast_to(self.z1d[:, None, None], self.shape)

    def paint(
        self,
        mask: Array,
        label: int | None = None,
        tissue: int | None = None,
        *,
        only: Sequence[int] | None = None,
        lesion: int | None = None,
    ) -> Array:
        """Write ``label``/``tissue``/``lesion`` where ``mask`` holds (and, with ``only``, where the current
        label is one of ``only``). Returns the mask actually painted."""
        mask = np.broadcast_to(mask, self.shape)
        if only is not None:
            allowed = np.zeros(256, bool)
            allowed[list(only)] = True
            mask = mask & allowed[self.label]
        if label is not None:
            self.label[mask] = label
        if tissue is not None:
            self.tissue[mask] = tissue
        if lesion is not None:
            self.lesion[mask] = lesion
        return mask


def rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> Array:
    """(3, 3) rotation, angles in degrees about z (yaw), x (pitch) and y (roll); rows are the local axes."""
    a, b, c = np.deg2rad([yaw, pitch, roll])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    return (rz @ rx @ ry).T


def frame_from_axis(axis: Sequence[float], twist: float = 0.0) -> Array:
    """(3, 3) rotation whose first row (local x) is ``axis``; ``twist`` degrees about it."""
    a = np.asarray(axis, float)
    a /= np.linalg.norm(a)
    helper = np.array([0.0, 0.0, 1.0]) if abs(a[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    b = np.cross(a, helper)
    b /= np.linalg.norm(b)
    c = np.cross(a, b)
    t = np.deg2rad(twist)
    return np.stack([a, np.cos(t) * b + np.sin(t) * c, -np.sin(t) * b + np.cos(t) * c])


@dataclass(frozen=True)
class Blob:
    """A lobulated ellipsoid: centre (mm), semi-axes (mm), rotation (rows = local axes), and a smooth
    radial perturbation ``rho - amp * sin(f1.q + p1) * sin(f2.q + p2)`` in local normalised coordinates q."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    rot: Array | None = None
    amp: float = 0.0
    freqs: Array | None = None  # (2, 3)
    phases: Array | None = None  # (2,)

    @classmethod
    def random(cls, rng: np.random.Generator, center, radii, rot=None, amp: float = 0.08) -> Blob:
        f = rng.normal(size=(2, 3))
        f *= rng.uniform(2.0, 4.0, size=(2, 1)) / np.linalg.norm(f, axis=1, keepdims=True)
        return cls(tuple(map(float, center)), tuple(map(float, radii)), rot, amp, f, rng.uniform(0, 2 * np.pi, 2))

    def scaled(self, factor: float) -> Blob:
        return Blob(self.center, tuple(r * factor for r in self.radii), self.rot, self.amp, self.freqs, self.phases)

    def bounds(self, pad: float = 0.0) -> tuple[Array, Array]:
        r = max(self.radii) * (1.0 + 2 * self.amp) + pad
        c = np.asarray(self.center)
        return c - r, c + r

    def rho(self, reg: Region) -> Array:
        """Normalised radius at the region's voxels (< 1 inside), shape reg.shape."""
        d = (reg.ux - self.center[0], reg.uy - self.center[1], reg.uz - self.center[2])
        rot = np.eye(3) if self.rot is None else self.rot
        q = [(rot[i, 0] * d[0] + rot[i, 1] * d[1] + rot[i, 2] * d[2]) / self.radii[i] for i in range(3)]
        rho = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
        if self.amp:
            f, p = self.freqs, self.phases
            g = np.sin(f[0, 0] * q[0] + f[0, 1] * q[1] + f[0, 2] * q[2] + p[0])
            g *= np.sin(f[1, 0] * q[0] + f[1, 1] * q[1] + f[1, 2] * q[2] + p[1])
            rho = rho - self.amp * g
        return rho


def paint_blob(canvas: Canvas, blob: Blob, label: int | None, tissue: int | None, *, only=None, clip=None) -> None:
    """Paint the inside of ``blob``; ``clip(region) -> bool mask`` restricts it further."""
    reg = canvas.region(*blob.bounds())
    if reg is None:
        return
    mask = blob.rho(reg) < 1.0
    if clip is not None:
        mask &= clip(reg)
    reg.paint(mask, label, tissue, only=only)


def smooth_path(keypoints: Sequence[Sequence[float]], radii: Sequence[float], step: float) -> tuple[Array, Array]:
    """A C2 spline through ``keypoints`` (N, 3) resampled every ``step`` mm; radii interpolated linearly.
    Returns points (M, 3) and radii (M,)."""
    p = np.asarray(keypoints, float)
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(np.maximum(seg, 1e-3))])
    n = max(int(np.ceil(s[-1] / step)) + 1, 2)
    t = np.linspace(0.0, s[-1], n)
    pts = CubicSpline(s, p, bc_type="natural")(t) if len(p) > 2 else p[0] + (p[1] - p[0]) * (t / s[-1])[:, None]
    return pts, np.interp(t, s, np.asarray(radii, float))


def tube_segments(canvas: Canvas, points: Array, radii: Array) -> list[tuple[Region, Array, Array]]:
    """For each segment of the polyline ``points`` (N, 3) with radii (N,) (a chain of truncated cones with
    round ends): the region, the inside mask and the position t in [0, 1] along the segment."""
    out = []
    for p0, p1, r0, r1 in zip(points[:-1], points[1:], radii[:-1], radii[1:]):
        r = max(r0, r1)
        reg = canvas.region(np.minimum(p0, p1) - r, np.maximum(p0, p1) + r)
        if reg is None:
            continue
        d = p1 - p0
        l2 = float(d @ d) or 1e-6
        vx, vy, vz = reg.ux - p0[0], reg.uy - p0[1], reg.uz - p0[2]
        t = np.clip((vx * d[0] + vy * d[1] + vz * d[2]) / l2, 0.0, 1.0)
        dist2 = (vx - t * d[0]) ** 2 + (vy - t * d[1]) ** 2 + (vz - t * d[2]) ** 2
        rad = r0 + t * (r1 - r0)
        out.append((reg, dist2 < rad * rad, t))
    return out


def paint_tube(
    canvas: Canvas, points: Array, radii: Array, label: int | None, tissue: int | None, *, only=None, clip=None
) -> None:
    """Paint a tube of varying radius along ``points`` (N, 3)."""
    for reg, mask, _ in tube_segments(canvas, np.asarray(points, float), np.asarray(radii, float)):
        if clip is not None:
            mask &= clip(reg)
        reg.paint(mask, label, tissue, only=only)


def paint_hollow_tube(
    canvas: Canvas,
    points: Array,
    radii: Array,
    wall: float,
    label: int | None,
    wall_tissue: int,
    lumen_tissue: int,
    *,
    only=None,
    clip=None,
) -> None:
    """A tube with a wall of thickness ``wall`` mm around a lumen: all walls first, then all lumens, so
    overlapping turns of one organ (bowel loops) keep open lumens."""
    radii = np.asarray(radii, float)
    paint_tube(canvas, points, radii, label, wall_tissue, only=only, clip=clip)
    inner_only = None if label is None else [label]
    paint_tube(canvas, points, np.maximum(radii - wall, 0.3), None, lumen_tissue, only=inner_only, clip=clip)


def branching_tree(
    rng: np.random.Generator,
    root: Sequence[float],
    direction: Sequence[float],
    length: float,
    radius: float,
    depth: int,
    *,
    spread: float = 35.0,
    shrink: float = 0.72,
    min_radius: float = 0.5,
) -> list[tuple[Array, Array, float, float]]:
    """Segments (p0, p1, r0, r1) of a randomly bifurcating tree (vessels, bronchi) whose radius and length
    shrink by ``shrink`` per generation; children deviate ``spread`` degrees (random) from the parent."""
    segs: list[tuple[Array, Array, float, float]] = []
    stack = [(np.asarray(root, float), np.asarray(direction, float), length, radius, depth)]
    while stack:
        p, d, ln, r, k = stack.pop()
        d = d / np.linalg.norm(d)
        end = p + d * ln
        r_end = max(r * shrink, min_radius)
        segs.append((p, end, r, r_end))
        if k <= 0:
            continue
        ortho = np.cross(d, rng.normal(size=3))
        ortho /= np.linalg.norm(ortho) + 1e-9
        for sign in (1.0, -1.0):
            ang = np.deg2rad(spread * rng.uniform(0.6, 1.3))
            child = np.cos(ang) * d + sign * np.sin(ang) * ortho + rng.normal(scale=0.1, size=3)
            stack.append((end, child, ln * rng.uniform(0.65, 0.85), r_end, k - 1))
    return segs


def paint_tree(
    canvas: Canvas, segments, label: int | None, tissue: int | None, *, only=None, grow: float = 0.0
) -> None:
    """Paint the segments of :func:`branching_tree`, each radius grown by ``grow`` mm (for walls)."""
    for p0, p1, r0, r1 in segments:
        paint_tube(canvas, np.stack([p0, p1]), np.array([r0 + grow, r1 + grow]), label, tissue, only=only)
