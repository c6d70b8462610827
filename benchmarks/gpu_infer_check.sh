#!/usr/bin/env bash
# ResNet-50 Offline on a CUDA GPU: pytorch backend, bf16 autocast, --quick, random weights (throughput only),
# on ImageNet when IMAGENET_DIR is set, else on generated JPEGs. Prints samples/s and LoadGen's verdict.
#   bash benchmarks/gpu_infer_check.sh            (about 2-3 minutes including start-up)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
OUT=${OUT:-/tmp/mlbench-gpu-check}
mkdir -p "$OUT"
export MLBENCH_CACHE=${MLBENCH_CACHE:-$OUT/cache}
DATA=${IMAGENET_DIR:-}
if [ -z "$DATA" ]; then
  DATA="$OUT/data"
  python benchmarks/infer_data.py "$DATA" --images 1024
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
for BS in ${BATCHES:-128 256}; do
  echo "== ResNet-50 Offline bf16, batch $BS ($(date +%T))"
  timeout "${RUN_TIMEOUT:-150}" python -m mlbench infer resnet50 --size reference --weights random --data-dir "$DATA" \
    --device cuda --precision bf16 --backend pytorch --scenario Offline --quick --duration-s 10 \
    --batch-size "$BS" --workers 2 --threads 4 --output-dir "$OUT/runs" || true
done
python - "$OUT/runs" <<'PY'
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("*/result.json")):
    r = json.loads(f.read_text())
    m = r["metrics"]
    print(f"GPU ResNet-50 Offline bf16 batch {r['config']['batch_size']}: "
          f"{m.get('throughput/samples_per_s') or 0:.1f} samples/s, LoadGen {r.get('loadgen', {}).get('validity')}, "
          f"peak fraction {m.get('compute/peak_fraction')}, status {r['status']} ({f.parent.name})")
PY
