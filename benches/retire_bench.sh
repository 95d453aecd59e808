#!/bin/sh
# Publishes/s on random topic names with the hub full (--max-topics
# 10000) and unbounded, for a given ssehub binary (loopback only).
#   sh benches/retire_bench.sh path/to/ssehub [seconds]
set -e
BIN=${1:?binary}
SECS=${2:-15}
DIR=$(dirname "$0")
for MAX in 10000 100000000; do
  LOG=$(mktemp)
  "$BIN" --listen 127.0.0.1:0 --tick 0 --max-topics $MAX >"$LOG" 2>/dev/null &
  PID=$!
  for _ in $(seq 50); do grep -q listening "$LOG" && break; sleep 0.1; done
  PORT=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$LOG" | head -1)
  # Fill the hub first, so that the measured run retires on every new topic.
  python3 "$DIR/random_topics.py" --port "$PORT" --seconds "${FILL:-15}" --conns 8 --seed 7 >/dev/null
  printf 'max-topics %s: ' "$MAX"
  python3 "$DIR/random_topics.py" --port "$PORT" --seconds "$SECS" --conns 8
  # How many topics exist and were retired (did the run retire on every new topic?).
  python3 - "$PORT" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1]).read().decode()
print("  " + ", ".join(l for l in text.splitlines() if l.startswith(("ssehub_topics ", "ssehub_topics_retired_total"))))
PY
  kill "$PID"; wait "$PID" 2>/dev/null || true
  rm -f "$LOG"
done
