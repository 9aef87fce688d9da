#!/usr/bin/env bash
# Warm path benchmarks on a broker of their own (port 19592), each figure beside its peer:
#   1. shipper vs `kcat -P` (Debian): the same N pre-generated log lines into the same broker with
#      the same producer settings (idempotent, acks=all, lz4, linger 20 ms), one partition each;
#   2. collector: the N messages from Kafka into the warm store's Delta table, from a fresh
#      consumer group; beside it, bench's store_write: the same records in the same batches written
#      as plain hive Parquet (the layout before Delta, and the physical baseline) and as Delta
#      commits, without Kafka;
#   3. emit-to-queryable delay: an agent under RATE requests/s (one INFO event each, oha) for
#      DURATION s, a collector, and bench's warm_latency watching the store.
# Usage: bench/warm_path.sh   (N=1000000 RATE=10000 DURATION=30 by default). Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
RATE=${RATE:-10000}
DURATION=${DURATION:-30}
PORT=19592
BROKERS=127.0.0.1:$PORT
ROOT=$PWD

source bench/scratch.sh
need_kcat
OHA=$ROOT/.cache/tools/bin/oha
[ -x "$OHA" ] || cargo install oha --locked --root "$ROOT/.cache/tools"
cargo build --release -q -p agent -p collector -p bench -p query

kafka start
for topic in bench.kcat bench.ship; do kafka topic $topic 1; done
kafka topic bench.live 4


# Named for the current hour: the agent's roller leaves an open hour alone, so the shipper is
# measured by itself (a closed hour would be rolled to Parquet on the other core meanwhile).
lines=$work/ship/logs/agent.$(date -u +%Y-%m-%d-%H).log
mkdir -p "$work/ship/logs"
python3 bench/gen_log_lines.py "$N" > "$lines"
bytes=$(stat -c %s "$lines")
echo "warm_path: $N lines, $bytes bytes" >&2

# 1. kcat, then the shipper, the same lines to the same broker.
start=$(now)
kcat -P -b "$BROKERS" -t bench.kcat -l -z lz4 -X enable.idempotence=true -X acks=all -X linger.ms=20 \
    -X batch.num.messages=10000 -X queue.buffering.max.messages=500000 "$lines"
kcat_s=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
target/release/agent --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:19603 --data-dir "$work/ship" \
    --kafka-brokers "$BROKERS" --kafka-topic bench.ship --machine bench-host 2>"$work/ship.err" &
pids+=($!)
until metric 127.0.0.1:19603 agent_build_info >/dev/null 2>&1 || curl -sf http://127.0.0.1:19603/metrics >/dev/null; do sleep 0.02; done
ship_s=$(wait_metric 127.0.0.1:19603 agent_shipper_delivered_events_total "$N")
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# 2. The collector reads the kcat topic into the Delta table. Steady state: batches cut by size only
#    (100 000 rows), timed from the first batch written to the last full one, so neither the
#    group join nor the flush interval's wait for a last partial batch is counted.
BATCH=100000
target/release/collector --kafka-brokers "$BROKERS" --topic bench.kcat --group bench-$$ --out "$work/store" \
    --metrics-listen 127.0.0.1:19604 --flush-interval 600s --max-batch-rows $BATCH 2>"$work/collector.err" &
pids+=($!)
until curl -sf http://127.0.0.1:19604/metrics >/dev/null; do sleep 0.02; done
wait_metric 127.0.0.1:19604 collector_written_rows_total 1 >/dev/null
first=$(metric 127.0.0.1:19604 collector_written_rows_total | awk '{ printf "%d", $1 }')
full=$(( N / BATCH * BATCH ))
collect_s=$(wait_metric 127.0.0.1:19604 collector_written_rows_total "$full")
collected=$(( full - first ))
store_bytes=$(du -sb --exclude=_delta_log "$work/store" | cut -f1)
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
layouts=$(target/release/store_write "$lines" $BATCH "$work/layouts")
rm -rf "$work/layouts"

# 3. Emit-to-queryable at RATE events/s.
target/release/collector --kafka-brokers "$BROKERS" --topic bench.live --group live-$$ --out "$work/live" \
    --metrics-listen 127.0.0.1:19605 --flush-interval 1s 2>"$work/live-collector.err" &
pids+=($!)
target/release/agent --listen 127.0.0.1:18291 --metrics-listen 127.0.0.1:19606 --rate-limit 0 --data-dir "$work/live-agent" \
    --kafka-brokers "$BROKERS" --kafka-topic bench.live --machine live-host 2>"$work/live-agent.err" &
pids+=($!)
sleep 2
target/release/warm_latency "$work/live" $((DURATION + 8)) >"$work/latency.json" &
latency_pid=$!
"$OHA" -z "${DURATION}s" -q "$RATE" -c 16 --no-tui --output-format json -H 'Metadata: true' \
    'http://127.0.0.1:18291/metadata/instance/compute/vmId?api-version=2021-02-01&format=text' >"$work/oha.json"
wait "$latency_pid"
sent=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(d["statusCodeDistribution"].values()))' "$work/oha.json")
rps=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f" % d["summary"]["requestsPerSec"])' "$work/oha.json")
p50=$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["p50_ms"])' "$work/latency.json")
p99=$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["p99_ms"])' "$work/latency.json")
rows=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$work/latency.json")

rate() { awk -v n="$N" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
echo
echo "Machine: $(nproc) cores. N=$N lines ($bytes bytes of JSON), broker 127.0.0.1:$PORT (one node)."
echo
echo "| measurement | seconds | events/s | ratio |"
echo "|---|---|---|---|"
echo "| kcat -P (peer) | $kcat_s | $(rate "$kcat_s") | 1.00 |"
echo "| shipper | $ship_s | $(rate "$ship_s") | $(awk -v a="$kcat_s" -v b="$ship_s" 'BEGIN { printf "%.2f", a / b }') x kcat |"
echo "| collector, Kafka -> Delta table ($collected rows, steady state) | $collect_s | $(awk -v n="$collected" -v s="$collect_s" 'BEGIN { printf "%.0f", n / s }') | $(awk -v s="$collect_s" -v n="$collected" 'BEGIN { printf "%.2f", n / s / 200000 }') x goal 200k/s |"
echo
echo "Layouts, the same records in batches of $BATCH, no Kafka (store_write): $layouts"
echo "Store: $store_bytes bytes of Parquet for the first $full of the lines ($bytes bytes of JSON for all $N) ($(awk -v a="$bytes" -v b="$store_bytes" 'BEGIN { printf "%.1f", a / b }')x smaller)."
echo "Emit-to-queryable at $rps requests/s for ${DURATION}s ($sent requests): p50 $p50 ms, p99 $p99 ms over $rows rows (collector flush interval 1 s)."
