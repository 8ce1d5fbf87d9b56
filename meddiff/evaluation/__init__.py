"""Evaluation: one module per paper experiment. Each runs a task's outputs through :mod:`meddiff.metrics` and
produces the rows of that experiment's table (synthesis: Tables 3-4, denoising: Table 5, anomaly detection:
Table 6); :mod:`meddiff.reporting` only formats them."""
