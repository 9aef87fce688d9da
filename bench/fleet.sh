#!/usr/bin/env bash
# Fleet simulation, loopback only and bounded in time: AGENTS real agent processes (distinct
# machines over CLUSTERS clusters) under the stack's traffic generator (RATE requests/s each), one
# Kafka broker with a topic of PARTITIONS partitions, COLLECTORS collectors in one group committing
# to one Delta table on the moto S3 server, for DURATION seconds; then the agents drain and stop,
# the collectors catch up, and:
#   - every INFO+ event of every agent is checked to be in the table exactly once (warm_verify);
#   - events/s end to end, emit-to-queryable p50/p99 (warm_latency watching the S3 table), the
#     table's commits/s, commits retried after losing a race, fenced flushes, the collectors' peak
#     consumer lag, CPU seconds and peak RSS per component (from /proc), and the bytes per event
#     raw (the agents' local logs), in Kafka (the broker's log segments) and in Parquet (the
#     table's data files on S3) are printed as the inputs of docs/capacity.md;
#   - `collector compact --open-hour` rewrites the table's small files (the run is shorter than
#     an hour, so the hour is still open), `collector retain` vacuums the replaced ones, and
#     warm_verify checks the table again;
#   - a Ballista cluster (query-scheduler and two query-executors reading the table on S3)
#     answers a count per cluster, compared with `query` in-process.
# Usage: bench/fleet.sh   (AGENTS=100 CLUSTERS=10 RATE=10 DURATION=120 PARTITIONS=16
# COLLECTORS=2 by default). Release build (PROFILE=debug runs the debug binaries, to try the
# script: its figures are not the release ones). Ports 19792 (Kafka), 19795 (S3), 19801+ (collectors),
# 19850-19855 (Ballista), 20001+ / 21001+ (agents' API / metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
AGENTS=${AGENTS:-100}
CLUSTERS=${CLUSTERS:-10}
RATE=${RATE:-10}
DURATION=${DURATION:-120}
PARTITIONS=${PARTITIONS:-16}
COLLECTORS=${COLLECTORS:-2}
PORT=19792
BROKERS=127.0.0.1:$PORT
S3_PORT=19795
TABLE=s3://fleet/warm

source bench/scratch.sh
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then cargo build --release -q --workspace --bins; else cargo build -q --workspace --bins; fi
bin=target/$PROFILE

kafka start
kafka topic fleet.logs "$PARTITIONS"
s3_start fleet

metric() { curl -sf "http://$1/metrics" | awk -v m="$2" '$1 == m { s += $2 } END { printf "%.0f", s }'; }
# CPU seconds (user + system) of a process, from /proc/<pid>/stat.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Peak resident memory of a process, MiB (VmHWM).
rss_mb() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }

collector_pids=()
for c in $(seq 1 "$COLLECTORS"); do
    $bin/collector --kafka-brokers "$BROKERS" --topic fleet.logs --group fleet \
        --instance-id "fleet-$c" --out "$TABLE" --metrics-listen "127.0.0.1:$((19800 + c))" \
        2>"$work/collector-$c.err" &
    pids+=($!); collector_pids+=($!)
done
agent_pids=()
targets=()
for a in $(seq 1 "$AGENTS"); do
    cluster="cluster-$(( (a - 1) % CLUSTERS ))"
    $bin/agent --listen "127.0.0.1:$((20000 + a))" --metrics-listen "127.0.0.1:$((21000 + a))" \
        --data-dir "$work/agent-$a" --cluster "$cluster" --machine "host-$a" \
        --kafka-brokers "$BROKERS" --kafka-topic fleet.logs 2>"$work/agent-$a.err" &
    pids+=($!); agent_pids+=($!)
    targets+=("--target" "http://127.0.0.1:$((20000 + a))")
done
for a in $(seq 1 "$AGENTS"); do
    until curl -sf "http://127.0.0.1:$((21000 + a))/metrics" >/dev/null; do sleep 0.05; done
done
for c in $(seq 1 "$COLLECTORS"); do
    until curl -sf "http://127.0.0.1:$((19800 + c))/metrics" >/dev/null; do sleep 0.05; done
done
echo "fleet: $AGENTS agents, $COLLECTORS collectors up; traffic for ${DURATION}s" >&2

$bin/warm_latency "$TABLE" $((DURATION + 20)) >"$work/latency.json" 2>"$work/latency.err" &
latency_pid=$!
$bin/traffic "${targets[@]}" --rate "$RATE" --burst-every 0 2>"$work/traffic.err" &
traffic_pid=$!
pids+=("$traffic_pid")
started=$(date +%s.%N)
peak_lag=0
end=$(( $(date +%s) + DURATION ))
while [ "$(date +%s)" -lt "$end" ]; do
    sleep 5
    lag=0
    for c in $(seq 1 "$COLLECTORS"); do
        lag=$(( lag + $(metric "127.0.0.1:$((19800 + c))" collector_consumer_lag || echo 0) ))
    done
    [ "$lag" -gt "$peak_lag" ] && peak_lag=$lag
done
# Prometheus series one agent and one collector export (after traffic: every status seen).
agent_series=$(curl -sf "http://127.0.0.1:21001/metrics" | grep -vc '^#')
collector_series=$(curl -sf "http://127.0.0.1:19801/metrics" | grep -vc '^#')
traffic_cpu=$(cpu_s "$traffic_pid")
kill -TERM "$traffic_pid"; wait "$traffic_pid" 2>/dev/null || true

# Drain: every agent's shipper caught up, then stop the agents (their shutdown events ship too).
for a in $(seq 1 "$AGENTS"); do
    until [ "$(metric "127.0.0.1:$((21000 + a))" agent_shipper_backlog_bytes)" -le 4096 ]; do sleep 0.2; done
done
agent_cpu=0; agent_rss_max=0; agent_rss_sum=0
for pid in "${agent_pids[@]}"; do
    agent_cpu=$(awk -v a="$agent_cpu" -v b="$(cpu_s "$pid")" 'BEGIN { printf "%.1f", a + b }')
    r=$(rss_mb "$pid"); agent_rss_sum=$(( agent_rss_sum + r )); [ "$r" -gt "$agent_rss_max" ] && agent_rss_max=$r
done
kill -TERM "${agent_pids[@]}"
for pid in "${agent_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
elapsed=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

# The collectors catch up: no lag, and the table's row count unchanged over three looks.
last=-1; same=0; deadline=$(( $(date +%s) + 300 ))
while [ "$same" -lt 3 ] && [ "$(date +%s)" -lt "$deadline" ]; do
    sleep 2
    lag=0
    for c in $(seq 1 "$COLLECTORS"); do
        lag=$(( lag + $(metric "127.0.0.1:$((19800 + c))" collector_consumer_lag || echo 0) ))
    done
    now_rows=$($bin/store_rows "$TABLE" 2>/dev/null | head -1 || echo 0)
    if [ "$lag" -eq 0 ] && [ "$now_rows" = "$last" ]; then same=$(( same + 1 )); else same=0; fi
    last=$now_rows
done
wait "$latency_pid" || true
commits=0; retries=0; fenced=0; rows=0; collector_cpu=0; collector_rss=0
for c in $(seq 1 "$COLLECTORS"); do
    addr="127.0.0.1:$((19800 + c))"
    commits=$(( commits + $(metric "$addr" collector_delta_commits_total) ))
    retries=$(( retries + $(metric "$addr" collector_delta_commit_retries_total) ))
    fenced=$(( fenced + $(metric "$addr" collector_fenced_flushes_total) ))
    rows=$(( rows + $(metric "$addr" collector_written_rows_total) ))
done
for pid in "${collector_pids[@]}"; do
    collector_cpu=$(awk -v a="$collector_cpu" -v b="$(cpu_s "$pid")" 'BEGIN { printf "%.1f", a + b }')
    r=$(rss_mb "$pid"); [ "$r" -gt "$collector_rss" ] && collector_rss=$r
done
kafka_pid=$(cat "$work/kafka/kafka.pid" 2>/dev/null || true)
kafka_cpu=$(cpu_s "${kafka_pid:-0}"); kafka_rss=$(rss_mb "${kafka_pid:-0}")
moto_cpu=$(cpu_s "$moto_pid"); moto_rss=$(rss_mb "$moto_pid")

# Bytes per event: raw (agents' local logs, every level), Kafka (the topic's segments), Parquet.
raw_bytes=$(cat "$work"/agent-*/logs/*.log | wc -c)
raw_lines=$(cat "$work"/agent-*/logs/*.log | wc -l)
# Only the segments' record bytes (*.log): the index files are preallocated sparse files.
kafka_bytes=$(find "$work"/kafka/data/fleet.logs-* -name '*.log' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
# Bytes of the Parquet objects under the table on S3 (data files in the table or replaced).
s3_parquet_bytes() {
    curl -sf "http://127.0.0.1:$S3_PORT/fleet?list-type=2&prefix=warm/" \
        | python3 -c 'import re,sys; x=sys.stdin.read(); print(sum(int(s) for k,s in re.findall(r"<Key>([^<]*)</Key>.*?<Size>(\d+)</Size>", x, re.S) if k.endswith(".parquet") and "/_rollups/" not in k))'
}
parquet_bytes=$(s3_parquet_bytes)
verify=$($bin/warm_verify --store "$TABLE" "$work"/agent-*/ || true)
counts=$($bin/query --data "$TABLE" --format csv \
    'SELECT cluster, count(*) AS events FROM logs GROUP BY cluster ORDER BY cluster' | tr '\n' ' ')
# Compaction of every hour, the one in progress included (the run is shorter than an hour),
# then a vacuum of the replaced files: the table must still hold every event exactly once.
# Then the same count on a Ballista cluster and in-process.
compact_started=$(date +%s.%N)
compact_out=$($bin/collector compact --open-hour --out "$TABLE" 2>&1 | tail -1)
compact_s=$(awk -v s="$compact_started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
vacuum_out=$($bin/collector retain --max-age 36500d --vacuum-after 0s --out "$TABLE" 2>&1 | tail -1)
compacted_bytes=$(s3_parquet_bytes)
verify_compacted=$($bin/warm_verify --store "$TABLE" "$work"/agent-*/ || true)
$bin/query-scheduler --listen 127.0.0.1:19850 2>"$work/scheduler.err" &
pids+=($!)
for e in 1 2; do
    mkdir -p "$work/executor-$e"
    $bin/query-executor --scheduler 127.0.0.1:19850 --port $((19850 + 2 * e)) \
        --grpc-port $((19851 + 2 * e)) --work-dir "$work/executor-$e" 2>"$work/executor-$e.err" &
    pids+=($!)
done
count_sql='SELECT cluster, count(*) AS events FROM logs GROUP BY cluster ORDER BY cluster'
cluster_counts=
for _ in $(seq 1 60); do
    if cluster_counts=$($bin/query --cluster df://127.0.0.1:19850 --data "$TABLE" \
        --format csv "$count_sql" 2>/dev/null | tr '\n' ' '); then break; fi
    sleep 1
done
[ "$cluster_counts" = "$counts" ] && cluster_same=equal || cluster_same="DIFFERENT: $cluster_counts"
p50=$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["p50_ms"])' "$work/latency.json")
p99=$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["p99_ms"])' "$work/latency.json")
shipped=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("expected", "?"))' "$verify" 2>/dev/null || echo "?")

echo
echo "Machine: $(nproc) cores. $AGENTS agents in $CLUSTERS clusters at $RATE requests/s each for ${DURATION}s;"
echo "topic of $PARTITIONS partitions on one broker; $COLLECTORS collectors -> $TABLE (moto S3)."
echo
echo "| measurement | value |"
echo "|---|---|"
echo "| events shipped (INFO+) / rows committed | $shipped / $rows |"
echo "| events/s end to end (rows / ${elapsed}s from traffic start to agents stopped) | $(awk -v r="$rows" -v s="$elapsed" 'BEGIN { printf "%.0f", r / s }') |"
echo "| events/s per host | $(awk -v r="$rows" -v s="$elapsed" -v a="$AGENTS" 'BEGIN { printf "%.1f", r / s / a }') |"
echo "| emit-to-queryable p50 / p99 (ms) | $p50 / $p99 |"
echo "| table commits, commits/s | $commits, $(awk -v c="$commits" -v s="$elapsed" 'BEGIN { printf "%.2f", c / s }') |"
echo "| commits retried after a race / flushes fenced | $retries / $fenced |"
echo "| peak consumer lag (messages, all partitions) | $peak_lag |"
echo "| CPU s: agents (sum) / collectors (sum) / Kafka / moto / traffic generator | $agent_cpu / $collector_cpu / $kafka_cpu / $moto_cpu / $traffic_cpu |"
echo "| peak RSS MiB: agent (max, mean) / collector (max) / Kafka / moto | $agent_rss_max, $(( agent_rss_sum / AGENTS )) / $collector_rss / $kafka_rss / $moto_rss |"
echo "| bytes per event: raw local log (all levels) | $(awk -v b="$raw_bytes" -v n="$raw_lines" 'BEGIN { printf "%.0f", b / n }') ($raw_lines lines) |"
echo "| bytes per event: in Kafka (segments, lz4) | $(awk -v b="$kafka_bytes" -v n="$shipped" 'BEGIN { printf "%.0f", b / n }') |"
echo "| bytes per event: in Parquet (Delta data files) | $(awk -v b="$parquet_bytes" -v n="$rows" 'BEGIN { printf "%.0f", b / n }') |"
echo "| bytes per event: in Parquet after compaction and vacuum | $(awk -v b="$compacted_bytes" -v n="$rows" 'BEGIN { printf "%.0f", b / n }') |"
echo "| Prometheus series per agent / per collector | $agent_series / $collector_series |"
echo
echo "warm_verify: $verify"
echo "query, events per cluster: $counts"
echo "query --cluster (Ballista, 2 executors): $cluster_same"
echo "collector compact --open-hour (${compact_s}s): $compact_out"
echo "collector retain (vacuum): $vacuum_out"
echo "warm_verify after compaction and vacuum: $verify_compacted"
