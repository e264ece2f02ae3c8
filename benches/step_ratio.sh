#!/usr/bin/env bash
# ign-train's IGN step time against PyTorch's, same model, batch and threads, measured in turns
# (the machine is shared: each pair is taken back to back, the ratio is the median of the pairs).
#
#   PY=venv/bin/python benches/step_ratio.sh [NORM] [WIDTH] [BATCH] [THREADS] [ROUNDS]
#
# Defaults: the configuration that trains the shipped models (batch norm, width 32, batch 64,
# 2 threads), 5 rounds. The LayerNorm width-64 network: benches/step_ratio.sh layer 64.
# Needs PyTorch in $PY's environment (pip install torch numpy) and a release ign-train.
set -euo pipefail
cd "$(dirname "$0")/.."
norm=${1:-batch}; width=${2:-32}; batch=${3:-64}; threads=${4:-2}; rounds=${5:-5}
py=${PY:-python3}
bin=target/release/ign-train
[ -x "$bin" ] || cargo build --release -p ign-train
echo "norm $norm, width $width, batch $batch, $threads threads, $rounds rounds"
ratios=()
for i in $(seq "$rounds"); do
  ours=$("$bin" bench-step --norm "$norm" --width "$width" --batch "$batch" --threads "$threads" \
    --steps 8 --json | sed -n 's/.*"step_s": *\([0-9.e-]*\).*/\1/p')
  theirs=$("$py" benches/ign_step_torch.py --norm "$norm" --width "$width" --batch "$batch" \
    --threads "$threads" | sed -n 's/.*"step_s": *\([0-9.e-]*\).*/\1/p')
  r=$(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.3f", a / b}')
  echo "round $i: ign-train $ours s, pytorch $theirs s, ratio $r"
  ratios+=("$r")
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print "median ratio (ign-train / pytorch): " a[int((NR+1)/2)]}'
