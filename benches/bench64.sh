#!/usr/bin/env bash
# The 64x64x3 benchmark model (issue 18): an IGN of the paper's CelebA architecture (DCGAN,
# width 64, BatchNorm in inference form), made by ign-train from 2 training steps on MNIST
# upscaled to 64x64 RGB. Speed does not depend on the weights; fidelity is measured on its
# own outputs. 13.9 M parameters, 432 MFLOP per image, 55 MB: made on demand, not committed.
#
# Usage: benches/bench64.sh [OUT_DIR]   (default runs/bench64; prints the model's path)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/bench64}
model="$out/ign64.onnx"
if [ ! -f "$model" ]; then
  cargo build --release -p ign-train >&2
  data=${DATA:-../shared/data/mnist-10k}
  [ -e "$data" ] || data=trainer/tests/fixtures/mnist-300-images-idx3-ubyte.gz
  target/release/ign-train train --data "$data" --image-size 64 --channels 3 --width 64 \
      --norm batch --steps 2 --threads 1 --out "$out" --sample-every 0 --checkpoint-every 2 >&2
  target/release/ign-train export --checkpoint "$out" --out "$model" >&2
fi
echo "$model"
