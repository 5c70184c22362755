#!/usr/bin/env bash
# The training input pipeline side by side: ember's batch loader (benches/input_pipeline.rs) and Ultralytics
# 8.4.190's (tools/ultralytics_loader.py), same photos, default augmentation, batch 16, at 320 and 640, with 1
# and 2 workers, on coco128 and on a set larger than the mosaic buffer (coco128's photos under BIG names, linked
# in /tmp, nothing copied). Prints both rates and their ratio per worker.
#
#   bash tools/bench_input.sh            # env: EMBER_DATASETS, PYTHON (/opt/ultra/bin/python), BIG (1152),
#                                        # SIZES ("320 640"), WORKERS ("1 2"), RUNS (2), CARGO_TARGET_DIR, EMBER_BENCH,
#                                        # PROFILE (1: also each stage's cost, both tools)
# Each run: WARMUP batches, then BATCHES batches timed; the loaders run on across epochs as in training. The
# warm-up (24 batches of 16) fills every worker's recent-image buffer (128 images on these sets) at 2 workers, so
# both tools are timed in their steady state, not while each worker still decodes its first partners.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-/opt/ultra/bin/python}"
DATASETS="${EMBER_DATASETS:-$(pwd)/../shared/datasets}"
BIG="${BIG:-1152}"
SIZES="${SIZES:-320 640}"
WORKERS="${WORKERS:-1 2}"
RUNS="${RUNS:-2}"
WARMUP="${WARMUP:-24}"
BATCHES="${BATCHES:-32}"
export YOLO_OFFLINE=1 YOLO_CONFIG_DIR="${YOLO_CONFIG_DIR:-/tmp/ember-bench-input/yolo-config}"

# Both sets as links in /tmp, so Ultralytics writes its label cache there and not beside the shared photos.
root=/tmp/ember-bench-input
src="$DATASETS/coco128"
make_set() { # name copies
  local dir="$root/$1" n=0
  [ -d "$dir/images" ] && [ "$(ls "$dir/images" | wc -l)" -ge "$2" ] && return
  rm -rf "$dir" && mkdir -p "$dir/images" "$dir/labels"
  while [ "$n" -lt "$2" ]; do
    for img in "$src"/images/train2017/*.jpg; do
      [ "$n" -ge "$2" ] && break
      stem=$(basename "$img" .jpg)
      name=$(printf "%s_%04d" "$stem" "$n")
      ln -s "$img" "$dir/images/$name.jpg"
      [ -f "$src/labels/train2017/$stem.txt" ] && ln -s "$src/labels/train2017/$stem.txt" "$dir/labels/$name.txt"
      n=$((n + 1))
    done
  done
}
make_set coco128 128
make_set big "$BIG"

# EMBER_BENCH: an already built bench binary (else it is built here).
bench="${EMBER_BENCH:-}"
if [ -z "$bench" ]; then
  cargo build --release -j 2 --features vulkan --bench input_pipeline >/dev/null 2>&1 \
    || cargo build --release -j 2 --features vulkan --bench input_pipeline
  bench=$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/input_pipeline-* | grep -v '\.d$' | head -1)
fi

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "set | imgsz | workers | ember images/s (per worker) | Ultralytics images/s (per worker) | ratio per worker"
for set in coco128 big; do
  for imgsz in $SIZES; do
    for w in $WORKERS; do
      for run in $(seq "$RUNS"); do
        e=$("$bench" "$root/$set/images" "$imgsz" 16 "$w" "$BATCHES" "$WARMUP" | grep -o '[0-9.]* images/s' | head -1 | cut -d' ' -f1)
        # One Ultralytics worker is its in-process loader (no worker process), as in issue 21's figures.
        uw=$([ "$w" = 1 ] && echo 0 || echo "$w")
        u=$("$PYTHON" tools/ultralytics_loader.py rate "$root/$set/images" "$imgsz" 16 "$uw" "$WARMUP" "$BATCHES" 2>/dev/null \
          | grep -o '[0-9.]* images/s' | cut -d' ' -f1)
        awk -v s="$set" -v i="$imgsz" -v w="$w" -v e="$e" -v u="$u" -v r="$run" 'BEGIN {
          printf "%s (%d names) | %d | %d | %.1f (%.1f) | %.1f (%.1f) | %.2fx   (run %d)\n",
            s, (s == "big" ? '"$BIG"' : 128), i, w, e, e / w, u, u / w, e / u, r }'
      done
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# PROFILE=1: each stage's CPU time per image on one thread, both tools, on the big set (every mosaic decodes
# about one image) after WARMUP batches (Ultralytics' profile warms up its own way: tools/ultralytics_loader.py).
if [ "${PROFILE:-0}" = 1 ]; then
  for imgsz in $SIZES; do
    echo "stage profile, $BIG names, $imgsz px (ms of CPU per image)"
    "$bench" "$root/big/images" profile "$imgsz" 16 1 "$BATCHES" "$WARMUP" | grep stage
    "$PYTHON" tools/ultralytics_loader.py profile "$root/big/images" "$imgsz" $((16 * BATCHES)) 2>/dev/null \
      | grep stage | grep -v ' 0.00 ms'
  done
fi
