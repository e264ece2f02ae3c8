#!/usr/bin/env bash
# Ship a trained MNIST run as the bundled model: export it, make its int8 and fp16 variants,
# evaluate all three, and redraw the README's pictures from it.
#
#   models/ship.sh RUN_FOLDER        e.g. models/ship.sh runs/mnist-w32-bn-long
#
# Writes models/ign-mnist{,.noise,.int8,.fp16}.onnx, models/ign-mnist/ (eval.json with the
# out-of-distribution section, eval-int8.json, eval-fp16.json, the quantization reports,
# samples.png, projections.png, ood.png), docs/ign-demo.png, docs/ign-live.gif and
# docs/ign-morph.png and, with chromium installed, docs/web-live.png and docs/web-pad.png (the
# pad with a drawn 7). Needs ../shared/data/mnist-10k and a release build (made here).
#
#   models/ship.sh --scene           the scene model's loop as a GIF: docs/scene-live.gif
#
# draws camera | f | heatmap of models/scene/garden.onnx on the scene benchmark's test frames
# (Debian's mate-backgrounds, the photo and seed the model trained on, models/scene/README.md):
# 16 normal frames, 8 with a foreign patch, 8 normal, 8 with a small object, 8 normal.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--scene" ]; then
  cargo build --release -p ign-edge -p ign-train
  photos=/usr/share/backgrounds/mate/nature
  [ -f "$photos/Garden.jpg" ] || { echo "error: $photos/Garden.jpg: apt-get install mate-backgrounds" >&2; exit 2; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  target/release/ign-train scene make --photos "$photos/Garden.jpg" "$photos" --out "$tmp/bench" >/dev/null
  t="$tmp/bench/test"
  mkdir "$tmp/clip"
  i=0
  for f in $(ls "$t"/normal/*.png | head -16) $(ls "$t"/anomalous/foreign/*.png | head -8) \
      $(ls "$t"/normal/*.png | sed -n 17,24p) $(ls "$t"/anomalous/object/*.png | head -8) \
      $(ls "$t"/normal/*.png | sed -n 25,32p); do
    cp "$f" "$tmp/clip/$(printf %03d $i).png"
    i=$((i + 1))
  done
  target/release/ign-edge run --model models/scene/garden.onnx --source "file:$tmp/clip" \
      --anomaly --sink gif:docs/scene-live.gif --frames 48
  exit 0
fi
run=${1:?usage: models/ship.sh RUN_FOLDER | --scene}
data=${DATA:-../shared/data/mnist-10k}
[ -f "$run/checkpoint.safetensors" ] || { echo "error: $run/checkpoint.safetensors: no such run" >&2; exit 2; }
cargo build --release --workspace
bin=target/release
m=models/ign-mnist.onnx
out=models/ign-mnist
mkdir -p "$out"

echo "== export $run"
"$bin/ign-train" export --checkpoint "$run" --out "$m"

echo "== int8 and fp16 variants (calibration: the first images of $data, see MODELS.md)"
"$bin/ign-edge" quantize -m "$m" --precision int8 --calib "$data/images-idx3-ubyte.gz" \
    --report "$out/int8-report.json"
"$bin/ign-edge" quantize -m "$m" --precision fp16 --calib "$data/images-idx3-ubyte.gz" \
    --report "$out/fp16-report.json"

echo "== evaluations"
"$bin/ign-train" eval --model "$m" --data "$data" --ood --out-dir "$out" --json "$out/eval.json"
for p in int8 fp16; do
  "$bin/ign-train" eval --model "models/ign-mnist.$p.onnx" --reference "$m" --data "$data" \
      --json "$out/eval-$p.json"
done

echo "== the README's pictures"
"$bin/ign-edge" demo -o docs/ign-demo.png
"$bin/ign-edge" run --source test --fps 0 --sink gif:docs/ign-live.gif --frames 60 --steps 2
"$bin/ign-edge" latent interpolate models/demo/digit.png models/demo/sketch.png --frames 10 \
    -o docs/ign-morph.png
if command -v chromium >/dev/null 2>&1; then
  # the live page with the test scene (a 7 on a noisy background), as docs/web-live.png
  "$bin/ign-edge" run --source test --sink http:127.0.0.1:8093 --steps 2 --frames 3000 >/dev/null 2>&1 &
  page=$!
  sleep 2
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$(mktemp -d)" --screenshot=docs/web-live.png --window-size=1000,640 \
      --virtual-time-budget=4000 http://127.0.0.1:8093/ >/dev/null 2>&1 || true
  # the pad with a drawn 7 and its f and f∘f, as docs/web-pad.png
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$(mktemp -d)" --screenshot=docs/web-pad.png --window-size=940,420 \
      --virtual-time-budget=4000 'http://127.0.0.1:8093/pad?demo=1' >/dev/null 2>&1 || true
  kill "$page" 2>/dev/null || true
fi
echo "shipped $run: update models/MODELS.md with $out/eval.json's figures"
