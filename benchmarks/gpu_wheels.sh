#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh needs on a GPU machine that has PyTorch but no package registry: LoadGen,
# mlperf-logging and pycocotools, for that machine's Python (PY_VERSION, default 3.12: the lent H100/H200 image),
# downloaded here into .devwheels (git-ignored). Carry .devwheels to the GPU machine; gpu_check.sh installs from
# it. Their own needs (numpy, pandas, pyyaml, scipy) are on such images already.
#   bash benchmarks/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${PY_VERSION:-3.12}
[[ "$PYV" =~ ^3\.[0-9]+$ ]] || { echo "gpu_wheels: invalid PY_VERSION '$PYV': give the GPU machine's Python" \
  "as 3.N, e.g. PY_VERSION=3.12" >&2; exit 2; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .devwheels \
  "mlcommons-loadgen>=5.0" "mlperf-logging>=4.0" "pycocotools>=2.0.7" 2>&1 | { grep -v "is ignored: it is neither" || true; }
ls -1 .devwheels
