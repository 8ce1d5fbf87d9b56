"""DiffPIR's data-proximal step for volumetric super-resolution (paper 3.5.1, eq. 12), in torch.

Degradation (eq. 7) with H = slab averaging along z: a thick slice is the mean of ``factor`` consecutive thin
slices starting at thin slice ``offset`` -- the convention of :func:`meddiff.data.thick_slices.slab_average`,
of which :func:`slab_mean` / :func:`slab_mean_adjoint` are the torch twins (same numbers, on tensors, so the
step runs on the sampler's device inside the reverse loop).

Written by hand: the operator is one reshape and a mean, and the closed form of its proximal step needs
H Hᵀ = I / factor, which no library exposes for this slab operator.
"""

from __future__ import annotations

import math

import torch

from meddiff.data.thick_slices import thick_depth
from meddiff.errors import ConfigError, GeometryError


def _check_volume(x: torch.Tensor, name: str) -> None:
    if x.ndim != 5:
        raise GeometryError(f"{name} must be a (B, C, Z, Y, X) tensor, got shape {tuple(x.shape)}")


def slab_mean(x: torch.Tensor, factor: int, offset: int = 0) -> torch.Tensor:
    """H: thin (B, C, Z, Y, X) -> thick (B, C, Z', Y, X), ``Z' = (Z - offset) // factor``.

    ``thick[k] = mean(thin[offset + factor*k : offset + factor*(k+1)])`` along z; thin slices before ``offset``
    and after the last whole slab are not seen by H.

    Raises:
        GeometryError: ``x`` is not 5-D, or holds no whole slab.
    """
    _check_volume(x, "thin volume")
    depth = thick_depth(x.shape[2], factor, offset)
    b, c, _, h, w = x.shape
    slabs = x[:, :, offset : offset + depth * factor].reshape(b, c, depth, factor, h, w)
    return slabs.mean(dim=3)


def slab_mean_adjoint(y: torch.Tensor, factor: int, thin_depth: int, offset: int = 0) -> torch.Tensor:
    """Hᵀ: thick (B, C, Z', Y, X) -> thin (B, C, thin_depth, Y, X).

    Each thick value divided by ``factor`` is spread over its slab; thin slices outside every slab are 0.

    Raises:
        GeometryError: ``y`` is not 5-D or its depth does not match ``thin_depth``, ``factor``, ``offset``.
    """
    _check_volume(y, "thick volume")
    depth = thick_depth(thin_depth, factor, offset)
    if y.shape[2] != depth:
        raise GeometryError(
            f"thick stack of {y.shape[2]} slices does not match {thin_depth} thin slices at factor {factor}, "
            f"offset {offset} ({depth} whole slabs)"
        )
    b, c, _, h, w = y.shape
    out = y.new_zeros((b, c, thin_depth, h, w))
    out[:, :, offset : offset + depth * factor] = torch.repeat_interleave(y, factor, dim=2) / factor
    return out


def sr_data_step(x0: torch.Tensor, y0: torch.Tensor, rho: float, factor: int, offset: int = 0) -> torch.Tensor:
    """The exact minimiser ``argmin_x ||y0 - H x||² + rho ||x - x0||²`` for slab averaging H (paper eq. 12).

    Derivation: the gradient is zero where ``(HᵀH + rho I) x = Hᵀ y0 + rho x0``. With the push-through
    identity and ``H Hᵀ = I / factor``, ``x = x0 + Hᵀ (H Hᵀ + rho I)⁻¹ (y0 - H x0)``, i.e.

        x = x0 + Hᵀ (y0 - H x0) / (rho + 1/factor).

    Hence ``H x = H x0 + (y0 - H x0) / (1 + factor * rho)``: rho -> 0 returns a volume whose slab means are
    ``y0`` exactly; thin slices outside every slab (before ``offset``, after the last whole slab) keep ``x0``.

    Scaling convention. ``rho`` is DiffPIR's ``rho_t = lam * sigma_n² / sigma_bar_t²`` (paper 3.4.1, as
    :func:`meddiff.tasks.diffpir.data_weight`) for the objective above, where H is the *mean* over a slab and
    ``y0 = H x + n``, ``n ~ N(0, sigma_n²)``: sigma_n is the noise std of a thick slice in the model's
    intensity units. DiffPIR's own code solves this objective exactly for its kernel-and-decimate SR
    ('blur' mode, ``sr.data_solution(..., tau=rho_t)``). Eq. 12 as printed,
    ``x0 + Hᵀ(y0 - H x0) / (1 + rho_t)``, is that solution for an H with orthonormal rows (H Hᵀ = I); read with
    Hᵀ the "upsampling operator with factor sf" (nearest-neighbour repetition, U = factor * Hᵀ, as DiffPIR's
    'cubic' mode uses ``F.interpolate(scale_factor=sf)``), eq. 12 with ``rho_t`` equals this step with
    ``rho = rho_t / factor``. Both agree at rho -> 0 (data consistency) and differ only in how strongly a
    given rho_t pulls towards the prior.

    Args:
        x0: (B, C, Z, Y, X) the prior's clean estimate x0^(t) (eq. 9) on the thin grid.
        y0: (B, C, Z', Y, X) the thick volume, ``Z' = (Z - offset) // factor`` (only whole slabs).
        rho: trade-off coefficient rho_t >= 0 (0 = exact data consistency).
        factor: thin slices per thick slice (sf; 5 for 1 mm / 5 mm).
        offset: thin slice where the first slab starts.

    Returns:
        (B, C, Z, Y, X) tensor x̂0^(t), same dtype and device as ``x0``.

    Raises:
        ConfigError: ``rho`` negative or not finite.
        GeometryError: shapes do not fit H (see :func:`slab_mean_adjoint`), or in-plane sizes differ.
    """
    if not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho >= 0):
        raise ConfigError(f"super-resolution data weight rho must be a finite number >= 0, got {rho!r}")
    _check_volume(x0, "prior estimate x0")
    _check_volume(y0, "thick volume y0")
    if y0.shape[:2] != x0.shape[:2] or y0.shape[3:] != x0.shape[3:]:
        raise GeometryError(
            f"thick volume {tuple(y0.shape)} and thin estimate {tuple(x0.shape)} differ outside the z axis"
        )
    hx0 = slab_mean(x0, factor, offset)
    if y0.shape[2] != hx0.shape[2]:
        raise GeometryError(
            f"thick volume has {y0.shape[2]} slices, but {x0.shape[2]} thin slices hold {hx0.shape[2]} whole slabs "
            f"at factor {factor}, offset {offset}"
        )
    residual = y0.to(x0) - hx0
    return x0 + slab_mean_adjoint(residual, factor, x0.shape[2], offset) / (rho + 1.0 / factor)
