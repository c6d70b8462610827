#!/usr/bin/env bash
# Inference and compiled-training checks on a lent GPU machine: its own python3/torch, mlperf wheels carried
# in .devwheels. Runs benchmarks/gpu_infer_check.sh (ResNet-50 Offline, pytorch, bf16) and a compiled tiny
# training on cuda. Writes its outputs under $OUT.
set -uo pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 MLBENCH_SKIP_CACHE_CLEAR=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/shim
printf '#!/bin/sh\nexec python3 "$@"\n' > /tmp/shim/python; chmod +x /tmp/shim/python; export PATH=/tmp/shim:$PATH
python3 -m pip install -q --no-index --find-links .devwheels mlcommons-loadgen mlperf-logging 2>&1 | tail -2
# tee, never tail: a run cut short by the device limit must still leave what it printed
OUT=/tmp/gpucheck timeout "${INFER_TIMEOUT:-300}" bash benchmarks/gpu_infer_check.sh 2>&1 | tee "$OUT/gpu_infer.txt"
for f in /tmp/gpucheck/runs/*/result.json; do cp "$f" "$OUT/infer_$(basename "$(dirname "$f")").json"; done
[ "${SKIP_COMPILE:-0}" = 1 ] || {
  echo "== compiled training on cuda (tiny, bf16, --compile)"
  timeout 240 python3 -m mlbench train resnet50 --size tiny --device cuda --precision bf16 --compile \
    --output-dir /tmp/ctrain 2>&1 | tee "$OUT/compile_train.txt"
}
