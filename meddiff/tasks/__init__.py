"""Downstream tasks of MedDiff-FM (paper 3.4 and 3.5), one small module each.

Every task works on whole volumes through the patch-level network: at each reverse step the noise
estimate comes from :class:`meddiff.diffusion.sliding_window.SlidingWindowPlan` (overlapping windows,
per-voxel mean), the update from a MONAI scheduler (:mod:`meddiff.diffusion.samplers`).

* :mod:`meddiff.tasks.synthesis` — conditional CT volume synthesis from a region class and an anatomy
  map (3.4, 4.3.1, Tables 3-4): one test crop in, one synthetic NIfTI in HU with the crop's geometry out.
* denoising (DiffPIR from t_start, 3.4.1), anomaly detection (noise to a fixed t and denoise, 3.4.2),
  super-resolution / lesion generation / inpainting (ControlNet, RePaint; 3.5) live beside it.

Tasks read the training cache (:func:`meddiff.data.preprocess.load_crop`) and trained model folders
(:func:`meddiff.diffusion.checkpoint.load_model`); they do not compute metrics (see :mod:`meddiff.metrics`).
"""
