#!/usr/bin/env bash
# Batch-1 latency and load-to-first-output of ign-edge (tract) against onnxruntime, measured
# back to back in one run on the same model, so that the ratio holds on a noisy machine.
#
# Usage: benches/compare_ort.sh [MODEL.onnx ...]   (default: the shipped models)
#        benches/compare_ort.sh --int8 [MODEL.onnx ...]
#          (default: ign-mnist and the 64x64 model of benches/bench64.sh) every ratio of the int8
#          issue in one run: int8 against fp32 in ign-edge, ign-edge against onnxruntime, 2
#          threads against 1, onnxruntime's own QDQ int8 as the anchor, file sizes, and whether
#          onnxruntime runs ign-edge's int8 file to the same numbers as tract.
#          Ends with the table of docs/performance.md: each ratio's range over the rounds.
# Needs a release build (cargo build --release) and python3 with numpy and onnxruntime:
#   python3 -m venv venv && venv/bin/pip install numpy onnxruntime onnx && PY=venv/bin/python benches/compare_ort.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
# bytes on disk, with the external data file a PyTorch export keeps beside the model
size() { local s; s=$(stat -c%s "$1"); [ -f "$1.data" ] && s=$((s + $(stat -c%s "$1.data"))); echo "$s"; }
BIN=${BIN:-target/release/ign-edge}
if [ "${1:-}" = "--int8" ]; then
  shift
  models=("$@")
  [ ${#models[@]} -gt 0 ] || models=(models/ign-mnist.onnx "$(benches/bench64.sh)")
  rounds=$(mktemp); trap 'rm -f "$rounds"' EXIT
  p50() { "$PY" -c 'import json,sys
for x in json.load(open(sys.argv[1]))["results"]:
    print("%.1f:%s" % (x["latency"]["p50_us"], x.get("threads_used") or x["threads"]), end=" ")' "$1"; }
  for m in "${models[@]}"; do
    # onnxruntime's own QDQ int8 of the model: a benchmark anchor, kept out of models/ and
    # made again whenever the model is newer.
    q="${m%.onnx}.int8.onnx"; mkdir -p runs/ort; ortq="runs/ort/$(basename "${m%.onnx}").ort-qdq.onnx"
    [ -f "$q" ] || "$BIN" quantize -m "$m" --precision int8 --calib noise:128 --latency-runs 5 >/dev/null
    [ "$ortq" -nt "$m" ] || "$PY" benches/ort_int8.py qdq "$m" "$ortq" 2>/dev/null
    echo "== $m  (files: fp32 $(size "$m") B, ign-edge int8 $(size "$q") B = $(( 100 * $(size "$q") / $(size "$m") ))%, onnxruntime QDQ $(size "$ortq") B)"
    for round in 1 2 3; do
      "$BIN" bench --model "$m" --precision fp32 --precision int8 --threads 1 --threads 2 \
          --iterations 200 --no-peak --json /tmp/ign-bench.json >/dev/null 2>&1
      read -r f1 f2 i1 i2 <<<"$(p50 /tmp/ign-bench.json)"
      o1=$("$PY" benches/ort_int8.py time "$m" 1 200); o2=$("$PY" benches/ort_int8.py time "$m" 2 200)
      oq=$("$PY" benches/ort_int8.py time "$ortq" 1 200); oi=$("$PY" benches/ort_int8.py time "$q" 1 200)
      "$PY" - "$round" "$f1" "$f2" "$i1" "$i2" "$o1" "$o2" "$oq" "$oi" "$m" "$rounds" "$(( 100 * $(size "$q") / $(size "$m") ))" <<'PYEOF'
import json, sys
r = sys.argv[1]
(f1, t1), (f2, t2), (i1, _), (i2, _) = [(float(a), b) for a, b in (x.split(":") for x in sys.argv[2:6])]
o1, o2, oq, oi = map(float, sys.argv[6:10])
with open(sys.argv[11], "a") as out:
    out.write(json.dumps({"model": sys.argv[10], "fp32_us": f1, "int8_fp32": i1 / f1,
                          "fp32_ort": f1 / o1, "int8_ort": i1 / o1, "two_one": f1 / f2,
                          "two_used": t2, "file_pct": int(sys.argv[12])}) + "\n")
print(f"round {r}: ign-edge fp32 {f1:.0f} us (1 thr), {f2:.0f} us (2 asked, {t2} used), int8 {i1:.0f} us | "
      f"onnxruntime fp32 {o1:.0f} / {o2:.0f} us, its QDQ int8 {oq:.0f} us, ign-edge's int8 file {oi:.0f} us")
print(f"  ratios: ign-edge int8/fp32 {i1/f1:.2f}x (target <= 0.6 at 64x64, <= 1.0 on ign-mnist) | "
      f"fp32 ign-edge/onnxruntime {f1/o1:.2f}x (target <= 1.0) | ign-edge 2 thr vs 1 {f1/f2:.2f}x faster | "
      f"onnxruntime QDQ/fp32 {oq/o1:.2f}x")
PYEOF
    done
    # onnxruntime runs ign-edge's int8 file: its outputs against tract's on the same inputs.
    "$PY" benches/ort_int8.py noise "$m" 8 /tmp/ign-xin.npy
    "$BIN" project --model "$q" /tmp/ign-xin.npy --out /tmp/ign-y.npy >/dev/null
    echo "  onnxruntime runs ign-edge's int8 file; against tract's f on 8 noise inputs (max |diff|, PSNR dB):" \
      "$("$PY" benches/ort_int8.py match "$q" /tmp/ign-xin.npy /tmp/ign-y.npy)"
  done
  # the table of docs/performance.md: each ratio's range over the rounds, per model
  "$PY" - "$rounds" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\n| model | fp32, 1 thread | int8 / fp32 | int8 file | fp32 / onnxruntime fp32 | int8 / onnxruntime fp32 | 2 threads / 1 (fp32) |")
print("|---|---|---|---|---|---|---|")
for m in dict.fromkeys(r["model"] for r in rows):
    rs = [r for r in rows if r["model"] == m]
    span = lambda k, f="{:.2f}": "-".join(f.format(v) for v in sorted({min(x[k] for x in rs), max(x[k] for x in rs)}))
    used = "" if all(r["two_used"] == "2" for r in rs) else " (kept 1 thread)"
    print(f"| {m} | {span('fp32_us', '{:.0f}')} µs | {span('int8_fp32')}× | {rs[0]['file_pct']}% | "
          f"{span('fp32_ort')}× | {span('int8_ort')}× | {span('two_one')}×{used} |")
PYEOF
  exit 0
fi
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
