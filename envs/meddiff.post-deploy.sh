#!/usr/bin/env bash
# Run by Snakemake inside the freshly created conda env, from the workflow's working directory.
set -euo pipefail
python -m pip install -c envs/constraints.txt -e .
