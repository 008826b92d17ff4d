#!/usr/bin/env bash
# Wheels of the packages this pipeline needs that a lent GPU machine's image lacks (it has torch, numpy, opencv,
# pyyaml, matplotlib, pandas, tqdm and attrs, and cannot download): ale-py and pydantic with its dependencies,
# for its Python 3.12 on x86-64. Writes .whl/ (git-ignored, about 4 MB); bench/gpu_session.sh installs from it.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  ale-py==0.12.1 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  typing-extensions==4.16.0
ls .whl
