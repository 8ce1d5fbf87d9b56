"""Benchmarks of meddiff: ``python -m benchmarks`` runs them all side by side and writes benchmarks/README.md."""
