#!/usr/bin/env bash
# Training checks on a lent GPU machine (its own python3/torch; mlperf wheels carried in .devwheels,
# Fashion-MNIST carried in .devdata). Writes its outputs under $OUT.
set -uo pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 MLBENCH_SKIP_CACHE_CLEAR=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --find-links .devwheels mlcommons-loadgen mlperf-logging 2>&1 | tail -2
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "== harness vs plain loop: ResNet-50 reference, synthetic 224x224, cuda bf16 channels_last, batch 256"
python3 benchmarks/train_overhead.py --case reference --device cuda --precision bf16 --channels-last \
  --batch-size 256 --steps 40 --trials 5 2>&1 | tee "$OUT/overhead_reference_cuda_bf16.txt"
echo "== harness vs plain loop: ResNet-50 mini, Fashion-MNIST, 2 pinned CPU cores"
OMP_NUM_THREADS=2 taskset -c 0,1 python3 benchmarks/train_overhead.py --case mini --device cpu \
  --data-dir .devdata/fashion-mnist --steps 60 --trials 5 2>&1 | tee "$OUT/overhead_mini_cpu2.txt"
echo "== mlbench train resnet50 --size mini on cuda (end to end, compliance checker included)"
python3 -m mlbench train resnet50 --size mini --device cuda --data-dir .devdata/fashion-mnist \
  --output-dir "$OUT/runs" --log-every 200 2>&1 | tail -25 | tee "$OUT/mini_cuda.txt"
cp "$OUT"/runs/*/result.json "$OUT/mini_cuda_result.json" 2>/dev/null; rm -rf "$OUT/runs"
