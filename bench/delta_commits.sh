#!/usr/bin/env bash
# Commits to one Delta table from several collectors at once, on a local directory and on an S3
# server (moto, conditional put), side by side in one run: for 2 and 4 collectors in one group
# reading one topic of 8 partitions (N messages, pre-filled with kcat), the table's commits/s,
# the commits that lost a race and were retried by delta-rs, flushes fenced, rows/s, and that
# every message is in the table once (row count equals N). Each collector commits at least every
# FLUSH (1s) and every MAX_ROWS rows of a partition, small on purpose, to push the commit rate.
# Usage: bench/delta_commits.sh   (N=400000 MAX_ROWS=5000 FLUSH=1s by default). Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-400000}
MAX_ROWS=${MAX_ROWS:-5000}
FLUSH=${FLUSH:-1s}
PORT=19692
BROKERS=127.0.0.1:$PORT
S3_PORT=19695

source bench/scratch.sh
need_kcat
cargo build --release -q -p agent -p collector -p bench -p query

kafka start
kafka topic bench.commits 8
s3_start bench

python3 bench/gen_log_lines.py "$N" > "$work/lines"
# 64 machines, keyed by machine as the agents key them (one machine's events share a partition and
# stay in order), so the messages spread over the 8 partitions.
awk '{ m = "host-" (NR % 64); sub(/"machine":"bench-host"/, "\"machine\":\"" m "\""); print m "\t" $0 }' "$work/lines" \
    | kcat -P -b "$BROKERS" -t bench.commits -K '\t' -z lz4

metric_sum() { # name ports... -> sum over the collectors
    local name=$1 total=0 port value
    shift
    for port in "$@"; do
        value=$(curl -sf "http://127.0.0.1:$port/metrics" | awk -v m="$name" '$1 == m { printf "%d", $2 }')
        total=$((total + ${value:-0}))
    done
    echo "$total"
}

echo
echo "Machine: $(nproc) cores. N=$N messages over 8 partitions; each collector commits every $FLUSH or $MAX_ROWS rows of a partition."
echo
echo "| store | collectors | seconds | rows/s | commits | commits/s | retried commits | fenced flushes | rows in table |"
echo "|---|---|---|---|---|---|---|---|---|"
run=0
for store in local s3; do
    for collectors in 2 4; do
        run=$((run + 1))
        if [ "$store" = local ]; then out=$work/table-$run; else out=s3://bench/table-$run; fi
        ports=()
        for i in $(seq 1 "$collectors"); do
            port=$((19700 + run * 10 + i))
            ports+=("$port")
            target/release/collector --kafka-brokers "$BROKERS" --topic bench.commits --group "commits-$run-$$" \
                --out "$out" --metrics-listen "127.0.0.1:$port" --flush-interval "$FLUSH" \
                --max-batch-rows "$MAX_ROWS" 2>"$work/collector-$run-$i.err" &
            pids+=($!)
        done
        for port in "${ports[@]}"; do until curl -sf "http://127.0.0.1:$port/metrics" >/dev/null; do sleep 0.05; done; done
        until [ "$(metric_sum collector_written_rows_total "${ports[@]}")" -gt 0 ]; do sleep 0.05; done
        start=$(date +%s.%N)
        first=$(metric_sum collector_written_rows_total "${ports[@]}")
        first_commits=$(metric_sum collector_delta_commits_total "${ports[@]}")
        until [ "$(metric_sum collector_written_rows_total "${ports[@]}")" -ge "$N" ]; do sleep 0.05; done
        seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
        commits=$(( $(metric_sum collector_delta_commits_total "${ports[@]}") - first_commits ))
        retries=$(metric_sum collector_delta_commit_retries_total "${ports[@]}")
        fenced=$(metric_sum collector_fenced_flushes_total "${ports[@]}")
        rows=$(( N - first ))
        for _ in "${ports[@]}"; do kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; done
        table_rows=$(target/release/store_rows "$out")
        echo "| $store | $collectors | $seconds | $(awk -v n="$rows" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }') | $commits | $(awk -v n="$commits" -v s="$seconds" 'BEGIN { printf "%.1f", n / s }') | $retries | $fenced | $table_rows |"
    done
done
