"""Networks: the conditional 3D diffusion U-Net (on MONAI) and its position encoding."""
