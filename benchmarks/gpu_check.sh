#!/usr/bin/env bash
# Every GPU check of issue 16 in one run (about 6-8 minutes on one H100/H200), figures written under a folder:
#   1. RetinaNet reference training (ResNeXt50 FPN, 800x800, random backbone, synthetic batches), batch 32,
#      bf16: the plain torchvision loop (the MLPerf reference's step) against mlbench with its speed levers
#      (batched matching and loss, folded frozen BN, fused Adam, channels_last), first-steps loss check, and
#      the share of a step spent waiting for data on the real loader (generated 1024x1024 JPEGs)
#   2. ResNet-50 Offline inference under LoadGen, pytorch backend, bf16, batch 256, with MFU (datasheet peak)
#      and the fraction of the measured kernel peak
#   3. the same with --cuda-graphs (the model replayed from CUDA graphs captured before the test)
#   4. every benchmark end to end at the tiny size on the GPU (benchmarks/device_smoke.py: train and infer, bf16),
#      one line per command: four of the six domains have never run on a GPU
#   5. the same RetinaNet comparison as 1 with --compile (backbone+head and loss), in the time that is left
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]       (default: $OUT, else /tmp/mlbench-gpu-check)
#   bash benchmarks/gpu_check.sh --dry-run DIR   (CPU, tiny sizes, fp32: checks that every step parses and starts)
#
# Without a CUDA device it stops at once (exit 1) and says so. It uses the machine's own python3 and torch
# (PYTHON=... to choose another). LoadGen, mlperf-logging and pycocotools are installed from .devwheels when
# there: a GPU machine without a package registry gets them from `bash benchmarks/gpu_wheels.sh`, run first on a
# machine with one (then carry .devwheels); the script stops at once if they are still missing.
# Budget: BUDGET_S (default 450) seconds for all steps; each step has its own timeout, the smoke and compile
# steps get what is left. STEPS="levers infer graphs smoke compile" (the default) picks steps; BS (default 32) is RetinaNet's
# batch on the GPU. OUT_DIR receives two files: summary.txt (one line per figure) and details.tgz (each step's
# log and JSON, each inference run's result.json and LoadGen summary); the generated data, caches and run
# folders stay in WORK (default: a new folder under /tmp). The exit status is 1 when a step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT_DIR=${1:-${OUT:-/tmp/mlbench-gpu-check}}
mkdir -p "$OUT_DIR" || { echo "gpu_check: cannot create $OUT_DIR" >&2; exit 1; }
OUT_DIR=$(cd "$OUT_DIR" && pwd)
PY=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && [ "$DRY" = 1 ] && PY=$PWD/.venv/bin/python
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MLBENCH_SKIP_CACHE_CLEAR=1
export MLBENCH_RETINANET_BACKBONE=random
START=$(date +%s)
BUDGET_S=${BUDGET_S:-450}
SUMMARY=$OUT_DIR/summary.txt
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
FAILED=0
fail() { FAILED=$((FAILED + 1)); say "$*"; }
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

# one interpreter start (torch imports slowly): 3 = no torch, 4 = no CUDA device
VERSION=$("$PY" -c "
import sys
try:
    import torch
except Exception:
    sys.exit(3)
print(torch.__version__)
sys.exit(0 if torch.cuda.is_available() else 4)" 2>/dev/null)
RC=$?
if [ $RC = 3 ] || { [ $RC != 0 ] && [ $RC != 4 ]; }; then
  echo "gpu_check: $PY cannot import torch; set PYTHON=/path/to/python with torch installed" >&2; exit 1
fi
if [ "$DRY" = 0 ]; then
  if [ $RC = 4 ]; then
    echo "gpu_check: no CUDA device is visible to torch $VERSION: run it on a GPU machine, or use --dry-run" \
         "to check the script on CPU" >&2
    exit 1
  fi
  DEV=cuda; PREC=bf16; BS=${BS:-32}; IMG=""; NSTEPS=10; TRIALS=3; CHECK=3; DSTEPS=10; MAKE=1024
  INFER=(--batch-size 256 --duration-s 10 --workers 2 --threads 4); INFER_IMAGES=1024; INFER_DEV=cuda
else
  # fp32: bf16 ResNeXt convolutions crawl on a CPU without AMX (tests/retinanet/test_retinanet_levers.py
  # checks the bf16 losses there)
  DEV=cpu; PREC=fp32; BS=2; IMG="--image-size 64"; NSTEPS=1; TRIALS=1; CHECK=1; DSTEPS=2; MAKE=96
  INFER=(--batch-size 2 --duration-s 0.5 --workers 1 --threads 1); INFER_IMAGES=8; INFER_DEV=cpu
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/mlbench-gpu-check.XXXXXX")}
mkdir -p "$WORK" || { echo "gpu_check: cannot create $WORK" >&2; exit 1; }
WORK=$(cd "$WORK" && pwd)
export MLBENCH_CACHE=${MLBENCH_CACHE:-$WORK/cache}
if [ -d .devwheels ]; then
  "$PY" -m pip install -q --no-index --find-links .devwheels mlcommons-loadgen mlperf-logging pycocotools 2>&1 | tail -2
fi
if ! "$PY" -c "import mlperf_loadgen, mlperf_logging" 2>/dev/null; then
  echo "gpu_check: $PY lacks LoadGen or mlperf-logging: on a machine with pip's registry run" \
       "'bash benchmarks/gpu_wheels.sh' (wheels for this machine's Python into .devwheels), then carry .devwheels" >&2
  exit 1
fi
# fewer out-of-memory failures from fragmentation at batch 32 and 800x800 (both sides of a comparison share it)
[ "$DRY" = 0 ] && export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
"$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" \
  | tee -a "$SUMMARY"
say "work folder $WORK${PYTORCH_CUDA_ALLOC_CONF:+; PYTORCH_CUDA_ALLOC_CONF=$PYTORCH_CUDA_ALLOC_CONF}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  | tee -a "$SUMMARY"

retina() {  # retina NAME TIMEOUT extra args...: one train_retinanet.py comparison, its JSON and log
  local name=$1 limit=$2; shift 2
  say "== RetinaNet reference training, $name ($(date +%T), timeout ${limit}s)"
  (cd benchmarks && timeout "$limit" "$PY" train_retinanet.py --case reference --device $DEV --precision $PREC \
     --batch-size $BS $IMG --steps $NSTEPS --trials $TRIALS --check-steps $CHECK --json "$WORK/retinanet_$name.json" \
     "$@") > "$WORK/retinanet_$name.log" 2>&1
  local rc=$?
  tail -6 "$WORK/retinanet_$name.log"
  [ $rc = 0 ] || fail "retinanet $name: exit $rc$([ $rc = 124 ] && echo ' (timed out)'); see retinanet_$name.log"
}

CHECKS=" ${STEPS:-levers infer graphs smoke compile} "
want() { case "$CHECKS" in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# 1. levers without compile, with the data share on generated 1024x1024 JPEGs
want levers && retina levers $([ "$DRY" = 1 ] && echo 300 || echo 170) --channels-last \
  --data-dir "$WORK/openimages-like" --make-data $MAKE --data-steps $DSTEPS

# 2. ResNet-50 Offline inference, bf16, through LoadGen (3. the same replayed from CUDA graphs)
resnet50() {  # resnet50 NAME extra args...: one Offline run into infer_runs, its log as infer_NAME.log
  local name=$1; shift
  say "== ResNet-50 Offline bf16, $name ($(date +%T))"
  timeout $([ "$DRY" = 1 ] && echo 300 || echo 130) "$PY" -m mlbench infer resnet50 --size reference \
    --weights random --data-dir "$WORK/imagenet-like" --device $INFER_DEV --precision bf16 --backend pytorch \
    --scenario Offline --quick "${INFER[@]}" --output-dir "$WORK/infer_runs" "$@" > "$WORK/infer_$name.log" 2>&1 \
    || fail "resnet50 offline $name: exit $?; see infer_$name.log"
  tail -4 "$WORK/infer_$name.log"
}
if want infer || want graphs; then
  "$PY" benchmarks/infer_data.py "$WORK/imagenet-like" --images $INFER_IMAGES > "$WORK/infer_data.log" 2>&1 \
    || fail "infer data: failed, see infer_data.log"
fi
want infer && resnet50 eager
# CUDA graphs are captured on a GPU only: the dry run skips them
if want graphs; then
  if [ "$DRY" = 0 ]; then resnet50 graphs --cuda-graphs
  else say "resnet50 cuda graphs: skipped in the dry run (CUDA only)"; fi
fi

# 4. every benchmark at the tiny size, train and infer, in what is left of the budget (the dry run: one benchmark)
if want smoke; then
  T=$(left)
  if [ "$T" -gt 40 ]; then
    say "== every benchmark end to end, tiny, $DEV bf16 ($(date +%T), ${T} s left)"
    SMOKE=(); [ "$DRY" = 1 ] && SMOKE=(--benchmarks dlrm)
    timeout "$T" "$PY" benchmarks/device_smoke.py --device $DEV --precision bf16 --work "$WORK/smoke" \
      --timeout-s 90 --budget-s $((T - 30)) --json "$WORK/smoke.json" "${SMOKE[@]}" > "$WORK/smoke.log" 2>&1
    RC=$?
    grep -E '^(ok|FAIL) |commands passed' "$WORK/smoke.log" | tee -a "$SUMMARY"
    [ $RC = 0 ] || fail "smoke: exit $RC$([ $RC = 124 ] && echo ' (timed out)'); see smoke.log and smoke/*.log"
  else say "smoke: skipped, $T s left of the ${BUDGET_S}s budget"; fi
fi

# 5. compile, in what is left of the budget (the dry run skips it: compiling on CPU takes many minutes)
if [ "$DRY" = 0 ] && want compile; then
  T=$(left)
  # compiling ResNeXt-FPN forward and backward alone takes a minute or more
  if [ "$T" -gt 120 ]; then retina compile "$T" --channels-last --compile --trials 2
  else say "retinanet compile: skipped, $T s left of the ${BUDGET_S}s budget"; fi
fi

"$PY" - "$WORK" <<'PY' | tee -a "$SUMMARY"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for name in ("levers", "compile"):
    f = out / f"retinanet_{name}.json"
    if not f.is_file():
        continue
    r = json.loads(f.read_text())
    lc = r.get("loss_check", {})
    print(f"RetinaNet reference train ({r['device_name']}, {r['precision']}, batch {r['batch_size']}, "
          f"{r['image_size']}px) {name}: plain torchvision {r['median_plain']:.1f} images/s, mlbench "
          f"{r['median_mlbench']:.1f} images/s, ratio {r['median_ratio']:.2f} (trials "
          f"{', '.join(f'{x:.2f}' for x in r['ratios'])}); first-steps loss max rel diff "
          f"{lc.get('max_rel_diff', float('nan')):.1e}; warm-up {r['warm_up_s']:.0f} s; speed {json.dumps(r['speed'])}")
    d = r.get("data")
    if d:
        print(f"  real loader ({d['workers']} workers, generated {d.get('generated_size')}px JPEGs): {d['images_per_s']:.1f} images/s, "
              f"data wait {100 * d['data_wait_share']:.1f}% of the step")
for f in sorted((out / "infer_runs").glob("*/result.json")):
    r = json.loads(f.read_text())
    m = r.get("metrics", {})
    graphs = r.get("backend", {}).get("cuda_graphs")
    print(f"ResNet-50 Offline {r['config'].get('precision')} batch {r['config'].get('batch_size')}"
          f"{' CUDA graphs ' + json.dumps(graphs) if graphs else ''} on "
          f"{r['config'].get('device')}: {m.get('throughput/samples_per_s') or 0:.1f} samples/s, LoadGen "
          f"{r.get('loadgen', {}).get('validity')}, MFU {m.get('compute/mfu')} "
          f"({r.get('compute', {}).get('peak', {}).get('accelerator') or 'no datasheet peak'}), "
          f"kernel-peak fraction {m.get('compute/kernel_peak_fraction')}, "
          f"status {r.get('status')}")
PY
# two files back, whatever the number of runs: the summary, and the small outputs of every step in one archive
(cd "$WORK" && find . -maxdepth 1 \( -name '*.log' -o -name '*.json' \) -print; \
  if [ -d infer_runs ]; then find infer_runs -name result.json -o -name mlperf_log_summary.txt -o -name console.log; fi; \
  if [ -d smoke ]; then find smoke -maxdepth 1 -name '*.log'; fi) \
  | (cd "$WORK" && tar czf "$OUT_DIR/details.tgz" -T -) || fail "details.tgz: could not pack $WORK"
say "gpu_check finished in $(( $(date +%s) - START )) s ($FAILED step(s) failed); figures in $OUT_DIR"
[ "$FAILED" = 0 ]
