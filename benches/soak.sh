#!/usr/bin/env bash
# The soak benchmark (issue #30): the live loop with every output attached, for MINUTES, on a
# scene that changes, while clients come and go and the MQTT broker dies and comes back.
#
#   benches/soak.sh [MINUTES] [OUT]          (default 60 minutes into runs/soak; CI runs 2)
#
# What runs:
# - the camera: SOURCE, by default the test scene at 30 fps with a foreign square for 3 s of
#   every 15 (`test:patch=90..180/450`), so that events start and end all along;
# - `ign-edge run --anomaly` on MODEL (default: the bundled digit model, with THRESHOLD 0.65,
#   which the square crosses and the clean scene does not) with the web page
#   (`--sink http:`), events to a real mosquitto broker (`--events mqtt://...`), to a
#   JSON-lines file, and snapshots to a capped folder;
# - clients: MJPEG streams that read for 1-5 s and hang up, bare connections that open and
#   close, the pad posting an image, `/stats.json` polled;
# - the broker killed and restarted KILLS times (15 s down each time).
# First the same loop runs alone (no page, no events) for a baseline frame rate.
#
# It writes OUT/samples.csv (every 5 s: RSS, open descriptors, frames, broker up), OUT/soak.svg
# (RSS and descriptors over time), OUT/soak.json (the figures and the verdict) and prints the
# verdict. The verdict: after the warm-up (the first fifth), RSS grows by less than 16 MB and
# 10%, the descriptors by at most 8; no event that started while the broker had been up for
# 10 s and stayed up for 10 s more is missing from what a subscriber received; the loop's
# frame rate is within 10% of the baseline's. Exit status 1 when the verdict fails.
#
# Needs: a release build (made if missing; BIN=target/debug/ign-edge takes the test build, as
# CI does), Debian's mosquitto and mosquitto-clients, curl.
# Environment: BIN, MODEL, THRESHOLD (empty: the model's own), SOURCE, EXTRA (more run flags,
# e.g. "--loop" for a file source), KILLS (default 4).
#   MODEL=models/scene/garden.onnx THRESHOLD= SOURCE=file:frames/ EXTRA=--loop benches/soak.sh 60
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-60}
out=${2:-runs/soak}
bin=${BIN:-target/release/ign-edge}
source=${SOURCE:-test:patch=90..180/450}
threshold=${THRESHOLD-0.65}
kills=${KILLS:-4}
model_args=()
[ -n "${MODEL:-}" ] && model_args+=(--model "$MODEL")
[ -n "$threshold" ] && model_args+=(--threshold "$threshold")
# shellcheck disable=SC2206
extra=(${EXTRA:-})
for tool in mosquitto mosquitto_sub curl; do
  command -v "$tool" >/dev/null || { echo "soak: $tool is missing (apt-get install mosquitto mosquitto-clients curl)" >&2; exit 2; }
done
[ -x "$bin" ] || cargo build --release -p ign-edge
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
secs=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$out/broker.pid" ] && kill "$(cat "$out/broker.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

# an image for the pad to post
frame=${PAD_IMAGE:-models/scene/view.png}

# ---- the baseline: the same loop, nothing attached ----------------------------------------
base_secs=$(( secs / 6 < 60 ? (secs / 6 < 20 ? 20 : secs / 6) : 60 ))
echo "soak: baseline ${base_secs} s" >&2
timeout -s INT "$base_secs" "$bin" run "${model_args[@]}" --source "$source" --fps 30 "${extra[@]}" \
  --anomaly --sink null --json "$out/baseline.json" >/dev/null 2>"$out/baseline.log" || true

# ---- the broker and a subscriber ----------------------------------------------------------
free_port() { echo $(( 20000 + RANDOM % 30000 )); }
mqtt_port=$(free_port)
http_port=$(free_port)
cat >"$out/mosquitto.conf" <<EOF
listener $mqtt_port 127.0.0.1
allow_anonymous true
user root
persistence false
EOF
broker_up() {
  mosquitto -c "$out/mosquitto.conf" >>"$out/mosquitto.log" 2>&1 &
  echo $! >"$out/broker.pid"
  echo "$(date +%s) up" >>"$out/broker.csv"
}
broker_down() {
  kill "$(cat "$out/broker.pid")" 2>/dev/null || true
  wait "$(cat "$out/broker.pid")" 2>/dev/null || true
  echo "$(date +%s) down" >>"$out/broker.csv"
}
broker_up
sleep 1
mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" -t 'soak/event' -F '%p' >"$out/received.jsonl" 2>/dev/null &
pids+=($!)

# ---- the loop with everything attached ----------------------------------------------------
"$bin" run "${model_args[@]}" --source "$source" --fps 30 "${extra[@]}" --anomaly \
  --sink "http:127.0.0.1:$http_port" \
  --events "mqtt://127.0.0.1:$mqtt_port/soak" --events "jsonl:$out/events.jsonl" \
  --events-dir "$out/snapshots" --events-max-mb 20 \
  --json "$out/summary.json" >"$out/run.log" 2>&1 &
run_pid=$!
url="http://127.0.0.1:$http_port"
for _ in $(seq 100); do curl -sf "$url/stats.json" >/dev/null && break; sleep 0.2; done
curl -sf "$url/stats.json" >/dev/null || { echo "soak: the loop did not start (see $out/run.log)" >&2; exit 1; }
t0=$(date +%s)
end=$(( t0 + secs ))

# ---- clients ------------------------------------------------------------------------------
for _ in 1 2 3; do
  ( while [ "$(date +%s)" -lt "$end" ]; do
      curl -s -m $(( 1 + RANDOM % 5 )) "$url/stream.mjpg" -o /dev/null || true
    done ) & pids+=($!)
done
( while [ "$(date +%s)" -lt "$end" ]; do
    (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null || true
    sleep 0.2
  done ) & pids+=($!)
( while [ "$(date +%s)" -lt "$end" ]; do
    curl -s -m 10 -X POST --data-binary "@$frame" "$url/api/project" -o /dev/null || true
    sleep 1
  done ) & pids+=($!)

# ---- the broker dies and comes back -------------------------------------------------------
( for k in $(seq "$kills"); do
    sleep $(( secs / (kills + 1) - 15 > 5 ? secs / (kills + 1) - 15 : 5 ))
    [ "$(date +%s)" -lt $(( end - 20 )) ] || break
    broker_down; sleep 15; broker_up
  done ) & pids+=($!)

# ---- samples every 5 s --------------------------------------------------------------------
echo "t,rss_kb,fds,frames,clients" >"$out/samples.csv"
while [ "$(date +%s)" -lt "$end" ] && kill -0 "$run_pid" 2>/dev/null; do
  rss=$(awk '/VmRSS/ { print $2 }' "/proc/$run_pid/status")
  fds=$(ls "/proc/$run_pid/fd" | wc -l)
  stats=$(curl -s -m 2 "$url/stats.json" || true)
  frames=$(grep -o '"frames":[0-9]*' <<<"$stats" | head -1 | cut -d: -f2)
  clients=$(grep -o '"clients":[0-9]*' <<<"$stats" | head -1 | cut -d: -f2)
  echo "$(( $(date +%s) - t0 )),$rss,$fds,${frames:-},${clients:-}" >>"$out/samples.csv"
  sleep 5
done
curl -s -m 2 "$url/stats.json" >"$out/stats.json" || true
kill -TERM "$run_pid" 2>/dev/null || true
stopped=$(date +%s%N)
wait "$run_pid" || true
stop_ms=$(( ($(date +%s%N) - stopped) / 1000000 ))
sleep 1

# ---- the verdict --------------------------------------------------------------------------
fps_of() { grep -o '"fps": *[0-9.e+-]*' "$1" | head -1 | cut -d: -f2 | tr -d ' '; }
base_fps=$(fps_of "$out/baseline.json")
soak_fps=$(fps_of "$out/summary.json")
# events that started while the broker had been up 10 s and stayed up 10 s more (an event's
# id is evt-<unix ms>-<n>) must all have reached the subscriber
started=$(grep -c '"phase":"start"' "$out/events.jsonl" || true)
missing=0
checked=0
while IFS= read -r id; do
  at=$(( $(cut -d- -f2 <<<"$id") / 1000 ))
  settled=$(awk -v t="$at" '$2 == "up" && $1 <= t - 10 { u = 1; d = 0 } $2 == "down" && $1 <= t + 10 && $1 > t - 10 { d = 1 } $2 == "down" && $1 <= t - 10 { u = 0 } END { print (u && !d) ? 1 : 0 }' "$out/broker.csv")
  [ "$settled" = 1 ] || continue
  checked=$((checked + 1))
  grep -q "\"id\":\"$id\"" "$out/received.jsonl" || missing=$((missing + 1))
done < <(grep '"phase":"start"' "$out/events.jsonl" | grep -o '"id":"[^"]*"' | cut -d'"' -f4 || true)
awk -F, -v base="$base_fps" -v fps="$soak_fps" -v started="$started" -v checked="$checked" \
  -v missing="$missing" -v stop_ms="$stop_ms" -v minutes="$minutes" '
  NR == 1 { next }
  { n++; t[n] = $1; rss[n] = $2; fds[n] = $3 }
  END {
    w = int(n / 5) + 1
    for (i = w; i <= n; i++) {
      if (i == w || rss[i] > rmax) rmax = rss[i]
      if (i == w || fds[i] > fmax) fmax = fds[i]
    }
    growth_kb = rmax - rss[w]; fd_growth = fmax - fds[w]
    ratio = base > 0 ? fps / base : 0
    ok_rss = growth_kb < 16384 && growth_kb < 0.10 * rss[w]
    ok_fds = fd_growth <= 8
    ok_events = missing == 0 && checked > 0
    ok_fps = ratio >= 0.90
    printf "{\n  \"minutes\": %s,\n  \"samples\": %d,\n  \"rss_kb_after_warmup\": %d,\n  \"rss_kb_max\": %d,\n  \"rss_growth_kb\": %d,\n  \"fds_after_warmup\": %d,\n  \"fds_max\": %d,\n  \"events_started\": %d,\n  \"events_checked\": %d,\n  \"events_missing\": %d,\n  \"fps_baseline\": %s,\n  \"fps_soak\": %s,\n  \"fps_ratio\": %.3f,\n  \"stop_ms\": %d,\n  \"pass\": %s\n}\n", minutes, n, rss[w], rmax, growth_kb, fds[w], fmax, started, checked, missing, base, fps, ratio, stop_ms, (ok_rss && ok_fds && ok_events && ok_fps) ? "true" : "false"
  }' "$out/samples.csv" >"$out/soak.json"

# ---- the plot: RSS (MB) and descriptors over minutes, as SVG ------------------------------
awk -F, 'NR == 1 { next }
  { n++; t[n] = $1 / 60; r[n] = $2 / 1024; f[n] = $3; if (r[n] > rm) rm = r[n]; if (f[n] > fm) fm = f[n]; if (t[n] > tm) tm = t[n] }
  function path(v, vm, y0,   i, s) {
    s = ""
    for (i = 1; i <= n; i++) s = s sprintf("%s%.1f,%.1f ", i == 1 ? "M" : "L", 60 + 620 * t[i] / (tm > 0 ? tm : 1), y0 - 150 * v[i] / (vm > 0 ? vm * 1.1 : 1))
    return s
  }
  END {
    print "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"700\" height=\"420\" font-family=\"sans-serif\" font-size=\"12\">"
    print "<rect width=\"700\" height=\"420\" fill=\"white\"/>"
    printf "<text x=\"60\" y=\"20\">RSS, MB (max %.1f)</text>\n", rm
    printf "<path d=\"%s\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>\n", path(r, rm, 190)
    printf "<text x=\"60\" y=\"225\">open descriptors (max %d)</text>\n", fm
    printf "<path d=\"%s\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\"/>\n", path(f, fm, 395)
    print "<line x1=\"60\" y1=\"190\" x2=\"680\" y2=\"190\" stroke=\"#999\"/><line x1=\"60\" y1=\"395\" x2=\"680\" y2=\"395\" stroke=\"#999\"/>"
    printf "<text x=\"600\" y=\"412\">%.1f min</text>\n</svg>\n", tm
  }' "$out/samples.csv" >"$out/soak.svg"

cat "$out/soak.json"
grep -q '"pass": true' "$out/soak.json"
