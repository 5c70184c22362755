#!/usr/bin/env bash
# FP32 vs AMP (FP16 compute, FP32 master weights, dynamic loss scaling) on one GPU, CUDA or Vulkan, in one run:
#  - training (yolo26n at 320 and 640): images/s and step time of the last epoch, peak device memory (the pool's
#    reserved bytes, `peak GPU_mem` on the verbose throughput line; on CUDA also nvidia-smi's view), final mAP50-95;
#  - one training step (benches/gpu_step.rs, coco8 photos): kernels launched per step and per phase, ember's host
#    reads per step, peak device memory reserved and in use, step time;
#  - the AMP run's weights validated in FP32 and in FP16 (`--half`), which should agree within noise.
#
#   DEVICE=0 (default) or cuda:N: a CUDA build; DEVICE=vulkan or vulkan:N: a Vulkan build
#   (cargo build --release --features vulkan). On a software Vulkan device (lavapipe) use small sizes:
#   DEVICE=vulkan SIZES=64 BATCH=8 EPOCHS=2 IMAGES=32 STEP_BATCH=4 tools/gpu-bench.sh target/release/ember \
#     target/release/examples/make_shapes target/release/deps/gpu_step-<hash>
#   Those timings measure a CPU emulating a GPU, not GPU performance; kernel counts, host reads and device
#   bytes are the same on any device.
#
# Build here (no GPU needed), then carry the binaries to the GPU machine:
#   export CARGO_TARGET_DIR=$HOME/.cache/ember-cuda-target
#   cargo build --release -j 2 --features cuda --bin ember --example make_shapes
#   cargo bench -j 2 --features cuda --bench gpu_step --no-run    # prints the bench binary's path
#   mkdir -p gpu && cp $CARGO_TARGET_DIR/release/{ember,examples/make_shapes} gpu/ && cp <that path> gpu/gpu_step && strip gpu/*
#   (gpu/ is ignored by git; with the device tool: run(command="bash tools/gpu-bench.sh", carry=["gpu"]);
#   the step benchmark reads coco8 from $EMBER_DATASETS, default ../shared/datasets)
#
# Usage: tools/gpu-bench.sh [ember] [make_shapes] [gpu_step]; results land in $OUT (default /tmp/gpu-bench).
set -uo pipefail
EMBER=${1:-gpu/ember}
SHAPES=${2:-gpu/make_shapes}
STEP=${3:-gpu/gpu_step}
STEP_BATCH=${STEP_BATCH:-8}
export EMBER_DATASETS=${EMBER_DATASETS:-$(cd "$(dirname "$0")/.." && pwd)/../shared/datasets}
OUT=${OUT:-/tmp/gpu-bench}
BATCH=${BATCH:-32}
EPOCHS=${EPOCHS:-3}
DEVICE=${DEVICE:-0}
SIZES=${SIZES:-320 640}
IMAGES=${IMAGES:-256}
case "$DEVICE" in vulkan*) CUDA=false ;; *) CUDA=true ;; esac
mkdir -p "$OUT"
WORK=$(mktemp -d)

if $CUDA; then
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC')  $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)  $(nproc) CPUs"
else
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC')  $(nproc) CPUs"
  "$EMBER" info --device vulkan || exit 1
fi
"$EMBER" info --model yolo26n --imgsz 640 >"$OUT/info.txt" 2>&1 || { cat "$OUT/info.txt"; echo "the ember binary does not run here"; exit 1; }
tail -1 "$OUT/info.txt"
MAXSIZE=$(echo $SIZES | tr ' ' '\n' | sort -n | tail -1)
"$SHAPES" "$WORK/shapes" $IMAGES $(( IMAGES / 4 )) $MAXSIZE >/dev/null

# Peak GPU memory of one command, above what was in use before it started, sampled every 100 ms.
peak_mib() {
  local log=$1; shift
  if ! $CUDA; then
    "$@" >"$log" 2>&1
    local rc=$?
    echo "n/a"
    return $rc
  fi
  local base
  base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 | head -1)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 100 >"$log.mem" &
  local smi=$!
  "$@" >"$log" 2>&1
  local rc=$?
  kill $smi 2>/dev/null; wait $smi 2>/dev/null
  local peak
  peak=$(sort -n "$log.mem" | tail -1)
  echo $(( ${peak:-0} - ${base:-0} ))
  return $rc
}

echo
echo "| imgsz | precision | train img/s (last epoch) | step s | peak GPU_mem GiB | nvidia-smi peak MiB | final mAP50-95 |"
echo "|---|---|---|---|---|---|---|"
declare -A IPS MEM
for size in $SIZES; do
  for amp in fp32 fp16; do
    log="$OUT/train-$amp-$size.log"
    mem=$(peak_mib "$log" "$EMBER" train --data "$WORK/shapes/shapes.yaml" --model yolo26n --imgsz $size --batch $BATCH \
      --epochs $EPOCHS --device $DEVICE --amp $amp --workers 12 --val false --plots false --verbose true \
      --project "$WORK/runs" --name $amp-$size --exist-ok true)
    if [ $? -ne 0 ]; then
      echo "| $size | $amp | FAILED (see $log) | | | | |"
      tail -20 "$log"
      continue
    fi
    ips=$(grep -oE 'train: [0-9]+ images in [0-9.]+s \(([0-9.]+) images/s\)' "$log" | tail -1 | grep -oE '[0-9.]+ images/s' | cut -d' ' -f1)
    gpumem=$(grep -oE 'peak GPU_mem [0-9.]+G' "$log" | tail -1 | grep -oE '[0-9.]+')
    fit=$(tail -1 "$WORK/runs/$amp-$size/results.csv" | cut -d, -f9 | tr -d ' ')
    step=$(awk -v i="$ips" -v b=$BATCH 'BEGIN { if (i > 0) printf "%.3f", b / i }')
    IPS[$amp-$size]=$ips
    MEM[$amp-$size]=${gpumem:-0}
    echo "| $size | $amp | $ips | $step | ${gpumem:-n/a} | $mem | $fit |"
  done
  if [ -n "${IPS[fp16-$size]:-}" ] && [ -n "${IPS[fp32-$size]:-}" ]; then
    awk -v a="${IPS[fp16-$size]}" -v f="${IPS[fp32-$size]}" -v ma="${MEM[fp16-$size]}" -v mf="${MEM[fp32-$size]}" -v s=$size \
      'BEGIN { printf "| %s | AMP / FP32 | %.2fx speed | | %s | | |\n", s, a / f, (mf + 0 > 0 ? sprintf("%.2fx memory", ma / mf) : "") }'
  fi
done

echo
echo "One training step (yolo26n, coco8 photos, batch $STEP_BATCH, SGD; mean of the steps after the first):"
echo "| imgsz | precision | kernels per step | forward | loss + assigner | backward | optimizer + EMA + norm | host reads | peak reserved MiB | peak in use MiB | step s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
if [ -x "$STEP" ]; then
  for size in $SIZES; do
    for amp in fp32 fp16; do
      log="$OUT/step-$amp-$size.log"
      "$STEP" --device "$DEVICE" --imgsz $size --batch $STEP_BATCH --steps 3 --amp $amp >"$log" 2>&1 || { echo "| $size | $amp | FAILED (see $log) |"; tail -5 "$log"; continue; }
      phase() { grep -E "^\| $1 \|" "$log" | head -1 | cut -d'|' -f3 | tr -d ' '; }
      total=$(grep -E '^\| step \|' "$log" | cut -d'|' -f3 | tr -d ' ')
      secs=$(grep -E '^\| step \|' "$log" | cut -d'|' -f4 | tr -d ' ')
      reads=$(grep -oE 'host reads per step: [0-9.]+' "$log" | grep -oE '[0-9.]+$')
      reserved=$(grep -oE 'peak reserved [0-9.]+' "$log" | grep -oE '[0-9.]+$')
      inuse=$(grep -oE "peak in use at a phase's end [0-9.]+" "$log" | grep -oE '[0-9.]+$')
      echo "| $size | $amp | $total | $(phase forward) | $(phase 'loss \+ assigner') | $(phase backward) | $(phase 'optimizer \+ EMA \+ norm') | $reads | $reserved | $inuse | $secs |"
    done
  done
else
  echo "(no step benchmark at $STEP: build it with cargo bench --no-run, see the top of this script)"
fi

echo
echo "Validation of the AMP run's weights (EMA) in FP32 and in FP16 on the GPU:"
VSIZE=$(echo $SIZES | cut -d' ' -f1)
W="$WORK/runs/fp16-$VSIZE/weights/last.safetensors"
if [ -f "$W" ]; then
  for half in false true; do
    "$EMBER" val --weights "$W" --data "$WORK/shapes/shapes.yaml" --imgsz $VSIZE --batch $BATCH --device $DEVICE --half $half \
      --plots false --project "$WORK/val" --name half-$half --exist-ok true >"$OUT/val-half-$half.log" 2>&1
    echo "half=$half: $(grep -E '^ +all ' "$OUT/val-half-$half.log" | head -1)"
  done
fi
