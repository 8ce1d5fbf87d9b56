"""ControlNet fine-tuning of the foundation model (paper 3.3, eq. 4; Zhang & Agrawala 2023).

A frozen MedDiff-FM (:class:`~meddiff.models.network.MedDiffUNet`) plus MONAI's ``ControlNet``: a trainable
copy of the U-Net's encoder and middle block, initialised from the foundation weights, that reads the task
condition c_t (SR: the upsampled thick volume; lesions: the lesion mask) through a pixel-space conditioning
embedding and adds its zero-initialised outputs to the U-Net's skip connections
(``down_block_additional_residuals`` / ``mid_block_additional_residual``).

MONAI pairs these residuals with ``zip``: a ControlNet whose channels, attention levels, res blocks, heads or
norm groups differ from the U-Net's silently drops some of them. :func:`build_controlnet` therefore builds it
from the foundation network's own settings and refuses any mismatch in structure or weight shapes.
"""

from __future__ import annotations

import torch
from monai.networks.nets import ControlNet
from monai.networks.utils import copy_model_state
from torch import nn

from meddiff.errors import ConfigError
from meddiff.labels import REGIONS
from meddiff.models.mask_concat import KIND as MASK_CONCAT
from meddiff.models.mask_concat import build_mask_concat
from meddiff.models.network import MedDiffUNet, build_from_architecture

# ControlNet parameters with no counterpart in the U-Net (the condition encoder and the zero convolutions).
CONTROL_ONLY = ("controlnet_cond_embedding.", "controlnet_down_blocks.", "controlnet_mid_block.")
# U-Net parameters the trainable copy must take over: everything up to and including the middle block.
ENCODER = ("conv_in.", "time_embed.", "class_embedding.", "down_blocks.", "middle_block.")


def skip_connections(unet: nn.Module) -> int:
    """Number of skip tensors the U-Net's encoder produces (conv_in + each res block + each downsampler)."""
    return 1 + sum(len(b.resnets) + (b.downsampler is not None) for b in unet.down_blocks)


def _blank_controlnet(base: MedDiffUNet, control_channels: int) -> ControlNet:
    """A randomly initialised ControlNet with the foundation U-Net's settings (see :func:`build_controlnet`)."""
    m = base.model_config
    controlnet = ControlNet(
        spatial_dims=3,
        in_channels=base.unet.in_channels,
        num_res_blocks=m.num_res_blocks,
        channels=tuple(m.channels),
        attention_levels=tuple(m.attention_levels),
        norm_num_groups=m.norm_num_groups,
        num_head_channels=m.num_head_channels,
        num_class_embeds=len(REGIONS),
        conditioning_embedding_in_channels=control_channels,
        conditioning_embedding_num_channels=(m.channels[0],),
    )
    return controlnet


def build_controlnet(base: MedDiffUNet, control_channels: int) -> ControlNet:
    """A ControlNet with the foundation U-Net's architecture, its encoder weights copied from the U-Net.

    The conditioning embedding has one element (``base.model.channels[0]`` channels, no downsampling): the
    condition is given at the image's resolution (pixel-space diffusion; MONAI's default downsamples 8x, which
    suits latent diffusion only).

    Args:
        base: the foundation network (its weights are read, not changed).
        control_channels: channels Cc of the condition c_t (B, Cc, D, H, W).

    Raises:
        ConfigError: the ControlNet's structure or parameter shapes differ from the U-Net's encoder.
    """
    controlnet = _blank_controlnet(base, control_channels)
    unet_keys = {k for k in base.unet.state_dict() if k.startswith(ENCODER)}
    _, copied, not_copied = copy_model_state(controlnet, base.unet.state_dict())
    missing = sorted(unet_keys - set(copied))
    extra = sorted(k for k in not_copied if not k.startswith(CONTROL_ONLY))
    if missing or extra:
        raise ConfigError(
            "ControlNet does not match the foundation U-Net: "
            f"U-Net parameters not taken over {missing[:5]}, ControlNet parameters without a U-Net twin {extra[:5]}"
        )
    expected, produced = skip_connections(base.unet), len(controlnet.controlnet_down_blocks)
    if expected != produced:
        raise ConfigError(f"ControlNet gives {produced} skip residuals, the U-Net has {expected} skip connections")
    return controlnet


class ControlledMedDiff(nn.Module):
    """ε_θ(x_t, t, p_e, c_r, c_a, c_t) of eq. 4: the frozen foundation network steered by a ControlNet.

    The foundation network stays in eval mode with ``requires_grad=False`` whatever ``train()`` is called
    with; only :attr:`controlnet` trains (:meth:`trainable`). ``frozen=False`` trains both from scratch (Table 8's
    "MedDiff-FM from scratch": the same network and ControlNet, randomly initialised).

    Args:
        base: the foundation network (frozen in place unless ``frozen`` is False).
        control_channels: channels Cc of the task condition.
        controlnet: an existing ControlNet (when rebuilding a saved model); default: a copy of ``base``.
        frozen: keep ``base`` fixed (fine-tuning) or train it too (from scratch).
    """

    def __init__(self, base: MedDiffUNet, control_channels: int, controlnet: ControlNet | None = None, *,
                 frozen: bool = True):  # fmt: skip
        super().__init__()
        self.frozen = frozen
        self.base = base.requires_grad_(not frozen).eval() if frozen else base
        self.control_channels = int(control_channels)
        self.controlnet = controlnet if controlnet is not None else build_controlnet(base, control_channels)
        self.model_config = base.model_config
        self.position = base.position

    def train(self, mode: bool = True) -> ControlledMedDiff:
        super().train(mode)
        if self.frozen:
            self.base.eval()
        return self

    def trainable(self) -> nn.Module:
        """The module whose parameters training optimises (and whose EMA it keeps): the ControlNet, or everything
        when the foundation is not frozen."""
        return self.controlnet if self.frozen else self

    def forward(
        self,
        x_t: torch.Tensor,
        timesteps: torch.Tensor,
        anatomy: torch.Tensor,
        region: torch.Tensor,
        coords: torch.Tensor,
        control: torch.Tensor,
    ) -> torch.Tensor:
        """Predict ε (or v) under the task condition.

        Args:
            x_t, timesteps, anatomy, region, coords: as :meth:`MedDiffUNet.forward`.
            control: (B, Cc, D, H, W) task condition c_t on the grid of ``x_t``.

        Returns:
            (B, 1, D, H, W).
        """
        if control.shape[1] != self.control_channels or control.shape[2:] != x_t.shape[2:]:
            raise ValueError(f"control {tuple(control.shape)} must be (B, {self.control_channels}, *x_t's grid "
                             f"{tuple(x_t.shape[2:])})")  # fmt: skip
        inputs = self.base.conditioned_input(x_t, anatomy, coords)
        down, mid = self.controlnet(inputs, timesteps, controlnet_cond=control.to(inputs.dtype), class_labels=region)
        return self.base.unet(
            inputs,
            timesteps,
            class_labels=region,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        )

    def architecture(self) -> dict:
        """JSON description from which :func:`build_network` rebuilds it (foundation + condition channels)."""
        return {**self.base.architecture(), "control_channels": self.control_channels}


def build_network(arch: dict) -> nn.Module:
    """Rebuild a foundation, ControlNet-steered or mask-concatenation network from its ``architecture()``
    (weights random)."""
    if arch.get("kind") == MASK_CONCAT:
        return build_mask_concat(arch)
    base = build_from_architecture(arch)
    if "control_channels" not in arch:
        return base
    controlnet = _blank_controlnet(base, int(arch["control_channels"]))
    return ControlledMedDiff(base, int(arch["control_channels"]), controlnet)
