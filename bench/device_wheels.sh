#!/usr/bin/env bash
# Wheels of the packages this pipeline needs that a lent GPU machine's image lacks (it has torch, numpy, opencv,
# pyyaml, matplotlib, pandas, tqdm and attrs, and cannot download): ale-py and jsonschema with its dependencies,
# for its Python 3.12 on x86-64. Writes .whl/ (git-ignored, about 4 MB); bench/gpu_session.sh installs from it.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  ale-py==0.12.1 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
ls .whl
