"""Downstream tasks of MedDiff-FM (paper 3.4), one small module each.

Every task works on whole volumes through the patch-level network: at each reverse step the noise
estimate comes from :class:`meddiff.diffusion.sliding_window.SlidingWindowPlan` (overlapping windows,
per-voxel mean), the update from a MONAI scheduler (:mod:`meddiff.diffusion.samplers`).

* :mod:`~meddiff.tasks.synthesis` — conditional CT volume synthesis from a region class and an anatomy
  map (3.4, 4.3.1, Tables 3-4): one test crop in, one synthetic NIfTI in HU with the crop's geometry out.
* :mod:`~meddiff.tasks.denoising` — zero-shot low-dose CT denoising (3.4.1, 4.3.2, Table 5) with
  :mod:`~meddiff.tasks.diffpir` (DiffPIR from t_start, eqs. 7-11); its cases come from
  :mod:`~meddiff.tasks.denoising_cases` (pairs simulated by :mod:`~meddiff.tasks.lowdose`), the noise level
  σ_n from :mod:`~meddiff.tasks.denoising_noise`, the NLM / BM3D baselines from
  :mod:`~meddiff.tasks.denoising_baselines`.
* :mod:`~meddiff.tasks.anomaly` — zero-shot anomaly detection (3.4.2, 4.3.3, Table 6): the organ noised to
  a fixed t, predicted clean in one step (eq. 9); the anomaly map is where the image differs.

* :mod:`~meddiff.tasks.super_resolution` — volumetric super-resolution with the ControlNet fine-tuned on thick
  slices (3.5.1, 4.4.1, Table 7): DiffPIR from t = T with the slab-mean data step of
  :mod:`~meddiff.tasks.sr_data_step` (eq. 12), beside trilinear and cubic B-spline interpolation.

* :mod:`~meddiff.tasks.lesion_generation` — lesion generation from lesion masks by the lesion ControlNet and
  Table 8's from-scratch and Med-DDPM-style models (3.5.2, 4.4.2).
* :mod:`~meddiff.tasks.lesion_inpainting` — RePaint inpainting (eq. 13, :mod:`meddiff.diffusion.repaint`) of
  lesion masks into healthy crops with the lesion ControlNet (3.5.3, 4.4.3, Table 9).

Tasks read the training cache (:func:`meddiff.data.preprocess.load_crop`) and trained model folders
(:func:`meddiff.diffusion.checkpoint.load_model`); they do not compute metrics (:mod:`meddiff.evaluation` scores their outputs).
"""
