#!/usr/bin/env bash
# The long outage run: an agent under steady load ships through a broker of its own (port 19692)
# that is stopped for OUTAGE_MINUTES (default 30) while the agent keeps serving and logging, then
# started again; a collector drains everything into a store. Then bench's warm_verify checks that
# every INFO+ event is in the store exactly once, and every metadata request succeeded.
# Usage: bench/long_outage.sh   (OUTAGE_MINUTES=30 RATE=200 by default). Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
OUTAGE_MINUTES=${OUTAGE_MINUTES:-30}
RATE=${RATE:-200}
PORT=19692
BROKERS=127.0.0.1:$PORT
ROOT=$PWD
OHA=$ROOT/.cache/tools/bin/oha
[ -x "$OHA" ] || cargo install oha --locked --root "$ROOT/.cache/tools"
cargo build --release -q -p agent -p collector -p bench -p query

source bench/scratch.sh
kafka start
kafka topic bench.outage 4

target/release/collector --kafka-brokers "$BROKERS" --topic bench.outage --group outage-$$ --out "$work/store" \
    --metrics-listen 127.0.0.1:19704 --flush-interval 1s 2>"$work/collector.err" &
collector=$!
pids+=($collector)
target/release/agent --listen 127.0.0.1:18391 --metrics-listen 127.0.0.1:19703 --rate-limit 0 --data-dir "$work/agent" \
    --kafka-brokers "$BROKERS" --kafka-topic bench.outage --machine outage-host 2>"$work/agent.err" &
agent=$!
pids+=($agent)
sleep 2

total_s=$((OUTAGE_MINUTES * 60 + 120))
"$OHA" -z "${total_s}s" -q "$RATE" -c 4 --no-tui --output-format json -H 'Metadata: true' \
    'http://127.0.0.1:18391/metadata/instance/compute/vmId?api-version=2021-02-01&format=text' >"$work/oha.json" &
load=$!
sleep 60
echo "long_outage: stopping the broker for $OUTAGE_MINUTES minutes at $(date -u +%H:%M:%S)" >&2
kafka stop
sleep $((OUTAGE_MINUTES * 60))
backlog=$(curl -sf http://127.0.0.1:19703/metrics | awk '$1 == "agent_shipper_backlog_bytes" { print $2 }')
echo "long_outage: backlog on disk before restart: $backlog bytes; starting the broker at $(date -u +%H:%M:%S)" >&2
kafka start
wait "$load"
kill -TERM "$agent"; wait "$agent" || true
# Let the collector drain, then stop it cleanly.
sleep 15
kill -TERM "$collector"; wait "$collector" || true

requests=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(d["statusCodeDistribution"].values()), d["statusCodeDistribution"].get("200", 0))' "$work/oha.json")
verdict=$(target/release/warm_verify --store "$work/store" "$work/agent" || true)
echo
echo "Outage of $OUTAGE_MINUTES min under $RATE requests/s; requests sent, 200s: $requests; backlog before restart: $backlog bytes"
echo "warm_verify: $verdict"
