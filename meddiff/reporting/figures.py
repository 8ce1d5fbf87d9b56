"""Figures as PNG: orthogonal montages of CT volumes (paper Fig. 5), anomaly-map overlays and side-by-side
slice panels (denoising). Drawn on a bare ``matplotlib.figure.Figure`` (Agg canvas, no pyplot state), written
atomically.

Array convention: volumes are (Z, Y, X) numpy arrays in HU with z index 0 the most inferior slice, y index 0
at the top of the axial view (anterior in the usual LPS/RAS-resampled orientation) and x left to right;
spacing is given as (x, y, z) in mm (SimpleITK order). Coronal and sagittal views are drawn with superior up.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from meddiff.atomic import atomic_path

log = logging.getLogger(__name__)

_DPI = 100
_PANEL_INCHES = 3.0


def _save(fig: Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, facecolor="white")
    log.info("wrote %s", path)


def _check_volume(name: str, volume: np.ndarray) -> np.ndarray:
    v = np.asarray(volume)
    if v.ndim != 3 or min(v.shape) == 0:
        raise ValueError(f"figure row {name!r}: expected a non-empty (Z, Y, X) volume, got shape {v.shape}")
    return v


def _grey(ax: Axes, image: np.ndarray, window: tuple[float, float], aspect: float, *, superior_up: bool) -> None:
    ax.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect,
              origin="lower" if superior_up else "upper", interpolation="antialiased")
    ax.set_xticks([])
    ax.set_yticks([])


def orthogonal_views(volume: np.ndarray, spacing: tuple[float, float, float]) -> list[tuple[str, np.ndarray, float, bool]]:
    """Axial, coronal and sagittal slices through the centre of a (Z, Y, X) volume.

    Returns (view name, 2-D slice, imshow aspect = row spacing / column spacing, superior_up) per view:
    axial (Y, X), coronal (Z, X) and sagittal (Z, Y); the latter two have z on the rows (drawn superior up).
    """
    sx, sy, sz = (float(s) for s in spacing)
    cz, cy, cx = (n // 2 for n in volume.shape)
    return [
        ("axial", volume[cz], sy / sx, False),
        ("coronal", volume[:, cy, :], sz / sx, True),
        ("sagittal", volume[:, :, cx], sz / sy, True),
    ]


def orthogonal_montage(
    rows: dict[str, tuple[np.ndarray, tuple[float, float, float]]],
    path: str | Path,
    *,
    window: tuple[float, float],
    title: str,
    window_note: str | None = None,
) -> None:
    """One row per named volume, columns axial / coronal / sagittal through the volume centre, grey in the HU
    ``window`` (lower, upper), with physical aspect ratios from the spacing. Saved as PNG at ``path``.

    Args:
        rows: name -> ((Z, Y, X) volume in HU, spacing (x, y, z) in mm); insertion order is row order.
        window_note: subtitle replacing "window [lo, hi] HU" (e.g. when rows were pre-windowed to [0, 1]).
    """
    if not rows:
        raise ValueError("orthogonal_montage needs at least one volume")
    checked = {name: (_check_volume(name, vol), spacing) for name, (vol, spacing) in rows.items()}
    fig = Figure(figsize=(3 * _PANEL_INCHES, len(rows) * _PANEL_INCHES + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for r, (name, (volume, spacing)) in enumerate(checked.items()):
        for c, (view, image, aspect, superior_up) in enumerate(orthogonal_views(volume, spacing)):
            ax = axes[r, c]
            _grey(ax, image, window, aspect, superior_up=superior_up)
            if r == 0:
                ax.set_title(view)
            if c == 0:
                ax.set_ylabel(name)
    note = window_note or f"window [{window[0]:g}, {window[1]:g}] HU"
    fig.suptitle(f"{title}\n{note}", fontsize="medium")
    _save(fig, path)


def _overlay_slice(mask: np.ndarray | None, overlay: np.ndarray) -> int:
    """Axial index with the largest mask area, or (no mask / empty mask) the largest summed overlay."""
    if mask is not None and np.any(mask):
        return int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))
    return int(np.argmax(np.nan_to_num(overlay).reshape(overlay.shape[0], -1).sum(axis=1)))


def overlay_figure(
    rows: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    path: str | Path,
    *,
    window: tuple[float, float],
    title: str,
    overlay_cmap: str = "jet",
    overlay_range: tuple[float, float] | None = None,
    alpha: float = 0.45,
) -> None:
    """Anomaly maps over CT: per row the axial slice with the largest contour-mask area, shown as the plain
    image and with the alpha-blended heat map (and the mask contour in lime).

    Args:
        rows: name -> ((Z, Y, X) image in HU, (Z, Y, X) float overlay, (Z, Y, X) bool contour mask or None).
        overlay_range: colour range of the heat map, shared by all rows; default min/max over all overlays.
    """
    if not rows:
        raise ValueError("overlay_figure needs at least one row")
    for name, (image, overlay, mask) in rows.items():
        _check_volume(name, image)
        if np.shape(overlay) != np.shape(image) or (mask is not None and np.shape(mask) != np.shape(image)):
            raise ValueError(f"figure row {name!r}: image, overlay and mask must share a shape")
    if overlay_range is None:
        lo = min(float(np.nanmin(o)) for _, o, _ in rows.values())
        hi = max(float(np.nanmax(o)) for _, o, _ in rows.values())
        overlay_range = (lo, hi if hi > lo else lo + 1.0)
    fig = Figure(figsize=(2 * _PANEL_INCHES + 0.8, len(rows) * _PANEL_INCHES + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), 2, squeeze=False)
    heat = None
    for r, (name, (image, overlay, mask)) in enumerate(rows.items()):
        z = _overlay_slice(None if mask is None else np.asarray(mask, dtype=bool), np.asarray(overlay, dtype=float))
        for c in (0, 1):
            _grey(axes[r, c], np.asarray(image)[z], window, 1.0, superior_up=False)
        heat = axes[r, 1].imshow(np.asarray(overlay)[z], cmap=overlay_cmap, alpha=alpha,
                                 vmin=overlay_range[0], vmax=overlay_range[1], interpolation="nearest")
        if mask is not None and np.asarray(mask)[z].any():
            axes[r, 1].contour(np.asarray(mask)[z].astype(float), levels=[0.5], colors="lime", linewidths=1.0)
        axes[r, 0].set_ylabel(f"{name}\naxial z={z}")
    axes[0, 0].set_title("image")
    axes[0, 1].set_title("anomaly map")
    fig.colorbar(heat, ax=axes[:, 1].tolist(), shrink=0.8)
    fig.suptitle(f"{title}\nwindow [{window[0]:g}, {window[1]:g}] HU", fontsize="medium")
    _save(fig, path)


def side_by_side(
    images: dict[str, np.ndarray],
    path: str | Path,
    *,
    window: tuple[float, float],
    title: str,
) -> None:
    """One row of named 2-D slices in HU (e.g. low-dose / denoised / full-dose), grey in the HU ``window``."""
    if not images:
        raise ValueError("side_by_side needs at least one image")
    for name, img in images.items():
        if np.ndim(img) != 2:
            raise ValueError(f"panel {name!r}: expected a 2-D slice, got shape {np.shape(img)}")
    fig = Figure(figsize=(len(images) * _PANEL_INCHES, _PANEL_INCHES + 0.8), layout="constrained")
    axes = fig.subplots(1, len(images), squeeze=False)[0]
    for ax, (name, img) in zip(axes, images.items(), strict=True):
        _grey(ax, np.asarray(img), window, 1.0, superior_up=False)
        ax.set_title(name)
    fig.suptitle(f"{title}\nwindow [{window[0]:g}, {window[1]:g}] HU", fontsize="medium")
    _save(fig, path)
