"""Med-DDPM-style baseline of Table 8: the condition masks concatenated to x_t as extra input channels.

Med-DDPM (Dorjsembe et al. 2023) conditions a 3D DDPM by stacking the segmentation masks onto the noisy image.
Here the same network as MedDiff-FM (anatomy embedding, position channels, region class) gets ``control_channels``
more input channels for the lesion mask; it is trained from scratch on the lesion data, so Table 8 compares
conditioning by concatenation without pre-training against ControlNet on the foundation model.
"""

from __future__ import annotations

import dataclasses

import torch
from monai.networks.nets import DiffusionModelUNet

from meddiff.config import ModelConfig
from meddiff.labels import REGIONS
from meddiff.models.network import MedDiffUNet
from meddiff.models.position_encoding import position_channels

KIND = "mask_concat"


class MaskConcatUNet(MedDiffUNet):
    """MedDiffUNet whose input also holds the control masks: concat(x_t, anatomy, position, control).

    Args:
        model: architecture (as the foundation model's).
        position: "none" | "coords" | "embedding".
        control_channels: number of mask channels Cc (1: the lesion mask).
    """

    def __init__(self, model: ModelConfig, position: str, control_channels: int):
        super().__init__(model, position)
        self.control_channels = control_channels
        in_channels = (1 + model.anatomy_embedding_dim + position_channels(position, model.position_frequencies)
                       + control_channels)  # fmt: skip
        self.unet = DiffusionModelUNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=1,
            num_res_blocks=model.num_res_blocks,
            channels=tuple(model.channels),
            attention_levels=tuple(model.attention_levels),
            norm_num_groups=model.norm_num_groups,
            num_head_channels=model.num_head_channels,
            num_class_embeds=len(REGIONS),
        )

    def forward(
        self,
        x_t: torch.Tensor,
        timesteps: torch.Tensor,
        anatomy: torch.Tensor,
        region: torch.Tensor,
        coords: torch.Tensor,
        control: torch.Tensor,
    ) -> torch.Tensor:
        """ε (or v) estimate; as :meth:`MedDiffUNet.forward` plus ``control`` (B, Cc, D, H, W) masks in [0, 1].

        Returns:
            (B, 1, D, H, W).
        """
        if control.shape[1] != self.control_channels or control.shape[2:] != x_t.shape[2:]:
            raise ValueError(f"control {tuple(control.shape)} must be (B, {self.control_channels}, "
                             f"{', '.join(map(str, x_t.shape[2:]))})")
        inputs = torch.cat([self.conditioned_input(x_t, anatomy, coords), control.to(x_t.dtype)], dim=1)
        return self.unet(inputs, timesteps, class_labels=region)

    def architecture(self) -> dict:
        """JSON-serialisable description from which :func:`build_mask_concat` rebuilds the network."""
        return {"kind": KIND, "model": dataclasses.asdict(self.model_config), "position": self.position,
                "control_channels": self.control_channels}  # fmt: skip


def build_mask_concat(arch: dict) -> MaskConcatUNet:
    """Rebuild a network from :meth:`MaskConcatUNet.architecture`."""
    if arch.get("kind") != KIND:
        raise ValueError(f"not a {KIND} architecture: kind {arch.get('kind')!r}")
    m = dict(arch["model"])
    for key in ("patch_size", "channels", "attention_levels"):
        m[key] = tuple(m[key])
    return MaskConcatUNet(ModelConfig(**m), arch["position"], int(arch["control_channels"]))
