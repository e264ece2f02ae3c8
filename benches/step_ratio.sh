#!/usr/bin/env bash
# ign-train's IGN step time against PyTorch's, same model, batch and threads, measured in turns
# (the machine is shared: each pair is taken back to back, the ratio is the median of the pairs).
#
#   PY=venv/bin/python [SIZE=28|32|64 CHANNELS=1|3] [BIN=path/to/ign-train] benches/step_ratio.sh [NORM] [WIDTH] [BATCH] [THREADS] [ROUNDS]
#
# Defaults: the configuration that trains the shipped models (batch norm, width 32, batch 64,
# 2 threads), 5 rounds, 28x28x1. The LayerNorm width-64 network: benches/step_ratio.sh layer 64.
# The scene recipe's network (models/recipes/scene.toml): SIZE=64 CHANNELS=3 benches/step_ratio.sh
# batch 16 32; the paper's 64x64 network at the scene's size: SIZE=64 CHANNELS=3 ... batch 32 64.
# Needs PyTorch in $PY's environment (pip install torch numpy) and a release ign-train (BIN: another
# build of it, to compare two builds against the same reference).
set -euo pipefail
cd "$(dirname "$0")/.."
norm=${1:-batch}; width=${2:-32}; batch=${3:-64}; threads=${4:-2}; rounds=${5:-5}
py=${PY:-python3}
size=${SIZE:-28}; channels=${CHANNELS:-1}
bin=${BIN:-target/release/ign-train}
[ -x "$bin" ] || cargo build --release -p ign-train
echo "${size}x${size}x$channels, norm $norm, width $width, batch $batch, $threads threads, $rounds rounds"
ratios=()
for i in $(seq "$rounds"); do
  ours=$("$bin" bench-step --norm "$norm" --width "$width" --batch "$batch" --threads "$threads" \
    --image-size "$size" --channels "$channels" --steps 8 --json | sed -n 's/.*"step_s": *\([0-9.e-]*\).*/\1/p')
  theirs=$("$py" benches/ign_step_torch.py --norm "$norm" --width "$width" --batch "$batch" \
    --threads "$threads" --image-size "$size" --channels "$channels" | sed -n 's/.*"step_s": *\([0-9.e-]*\).*/\1/p')
  r=$(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.3f", a / b}')
  echo "round $i: ign-train $ours s, pytorch $theirs s, ratio $r"
  ratios+=("$r")
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print "median ratio (ign-train / pytorch): " a[int((NR+1)/2)]}'
