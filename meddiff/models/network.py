"""The MedDiff-FM denoiser: MONAI's DiffusionModelUNet with position, anatomy and region conditions.

Input of the U-Net = concat(x_t, anatomy embedding, position channels); the region class (HaN / chest /
abdomen) enters through the U-Net's class embedding (added to the timestep embedding).

Anatomy condition: the 118-class map (label space of :mod:`meddiff.labels`) enters as a learned per-voxel
embedding of width ``anatomy_embedding_dim`` (8 at paper scale). Embedding a label is exactly a 1x1x1
convolution of its one-hot vector, so the first layer loses nothing against one-hot input, but the input
tensor holds E channels instead of 119: at 128^3 a one-hot map would take 119 x 2.1 M floats (1 GB at
fp32) per sample before the first convolution, the embedding 8 x 2.1 M (67 MB). An extra index,
``NULL_LABEL``, stands for "no anatomy given" (condition dropout / unconditional sampling).
"""

from __future__ import annotations

import dataclasses

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn
from torch.profiler import record_function

from meddiff.config import ModelConfig
from meddiff.labels import NULL_LABEL, REGIONS
from meddiff.models.position_encoding import position_channels, position_input


class MedDiffUNet(nn.Module):
    """The denoising network of eq. 3, conditioned on position p_e, region c_r and anatomy c_a.

    Outputs ε_θ(x_t, t, p_e, c_r, c_a) or v, as ``diffusion.prediction`` says (the network is the same; the
    training target decides, :func:`meddiff.diffusion.schedule.training_target`). MONAI's 3D
    ``DiffusionModelUNet`` with the region as its class embedding and the anatomy embedding and position
    channels concatenated to x_t (:meth:`conditioned_input`).

    Args:
        model: architecture (patch size, channels, attention levels, ...).
        position: "none" | "coords" | "embedding" (Table 3 ablation).
    """

    def __init__(self, model: ModelConfig, position: str):
        super().__init__()
        self.model_config = model
        self.position = position
        self.anatomy_embedding = nn.Embedding(NULL_LABEL + 1, model.anatomy_embedding_dim)
        in_channels = 1 + model.anatomy_embedding_dim + position_channels(position, model.position_frequencies)
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

    def conditioned_input(self, x_t: torch.Tensor, anatomy: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Stack the U-Net input.

        Args:
            x_t: (B, 1, D, H, W) noisy image.
            anatomy: (B, D, H, W) int64 labels in 0..NULL_LABEL.
            coords: (B, 3, D, H, W) whole-volume coordinates in [-1, 1].

        Returns:
            (B, 1 + E + P, D, H, W).
        """
        parts = [x_t, self.anatomy_embedding(anatomy).permute(0, 4, 1, 2, 3).to(x_t.dtype)]
        pos = position_input(coords, self.position, self.model_config.position_frequencies)
        if pos is not None:
            parts.append(pos.to(x_t.dtype))
        return torch.cat(parts, dim=1)

    def forward(
        self,
        x_t: torch.Tensor,
        timesteps: torch.Tensor,
        anatomy: torch.Tensor,
        region: torch.Tensor,
        coords: torch.Tensor,
    ) -> torch.Tensor:
        """Predict the noise ε (or v, for a v-prediction model).

        Args:
            x_t: (B, 1, D, H, W) noisy image in the [-1, 1] intensity space.
            timesteps: (B,) int64 diffusion steps.
            anatomy: (B, D, H, W) int64 anatomy labels (c_a).
            region: (B,) int64 region index into :data:`meddiff.labels.REGIONS` (c_r).
            coords: (B, 3, D, H, W) whole-volume coordinates (p_c of eq. 5).

        Returns:
            (B, 1, D, H, W) ε or v estimate (the model's ``diffusion.prediction``).
        """
        with record_function("conditioning"):
            inputs = self.conditioned_input(x_t, anatomy, coords)
        with record_function("unet"):
            return self.unet(inputs, timesteps, class_labels=region)

    def architecture(self) -> dict:
        """JSON-serialisable description from which :func:`build_from_architecture` rebuilds the network."""
        return {"model": dataclasses.asdict(self.model_config), "position": self.position}


def build_from_architecture(arch: dict) -> MedDiffUNet:
    """Rebuild a network from :meth:`MedDiffUNet.architecture` (e.g. read from a checkpoint's JSON)."""
    m = dict(arch["model"])
    for key in ("patch_size", "channels", "attention_levels"):
        m[key] = tuple(m[key])
    return MedDiffUNet(ModelConfig(**m), arch["position"])
