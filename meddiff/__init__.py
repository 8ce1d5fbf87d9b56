"""meddiff: MedDiff-FM, a diffusion foundation model for 3D CT, as a reproducible workflow."""

__version__ = "0.1.0"
