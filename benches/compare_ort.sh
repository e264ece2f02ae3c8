#!/usr/bin/env bash
# Batch-1 latency and load-to-first-output of ign-edge (tract) against onnxruntime, measured
# back to back in one run on the same model, so that the ratio holds on a noisy machine.
#
# Usage: benches/compare_ort.sh [MODEL.onnx ...]   (default: the shipped models)
# Needs a release build (cargo build --release) and python3 with numpy and onnxruntime:
#   python3 -m venv venv && venv/bin/pip install numpy onnxruntime && PY=venv/bin/python benches/compare_ort.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
BIN=${BIN:-target/release/ign-edge}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(models/ign-mnist.onnx $(ls models/ign-fashion.onnx 2>/dev/null || true))
for m in "${models[@]}"; do
  for round in 1 2 3 4; do
    "$BIN" bench --model "$m" --precision fp32 --threads 1 --iterations 500 --no-peak --json /tmp/ign-bench.json >/dev/null 2>&1
    ign=$("$PY" -c 'import json;r=json.load(open("/tmp/ign-bench.json"))["results"][0];print(r["latency"]["p50_us"], r["load_to_first_output_ms"])')
    ort=$("$PY" benches/ort_latency.py "$m" --iterations 500 --threads 1)
    ort_p50=$(echo "$ort" | "$PY" -c 'import json,sys;print(json.load(sys.stdin)["p50_us"])')
    ort_load=$(echo "$ort" | "$PY" -c 'import json,sys;print(json.load(sys.stdin)["load_to_first_output_ms"])')
    read -r ign_p50 ign_load <<<"$ign"
    "$PY" - "$m" "$round" "$ign_p50" "$ign_load" "$ort_p50" "$ort_load" <<'PYEOF'
import sys
m, rnd, ip, il, op, ol = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
print(f"{m} round {rnd}: p50 ign-edge {ip:.1f} us, onnxruntime {op:.1f} us, ratio {ip/op:.2f}x; "
      f"load-to-first-output ign-edge {il:.1f} ms, onnxruntime {ol:.1f} ms")
PYEOF
  done
done
