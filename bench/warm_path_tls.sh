#!/usr/bin/env bash
# The warm path's throughput over plaintext, SASL_SSL (SCRAM-SHA-512) and mutual TLS, side by side
# on one broker of its own (port 19692, secured by scripts/kafka like the tests' broker): per
# round and protocol, the shipper sends the same N pre-generated log lines (one topic each,
# 1 partition), then the collector reads them into a Delta table from a fresh group (batches cut
# by size, timed from its first batch to its last full one, as bench/warm_path.sh does). Rounds
# interleave the protocols, so drift on a noisy machine hits them alike, after a warm-up round
# that is not counted (the broker's JVM and the page cache: a first round ran 30-45% slower);
# the report gives the median events/s per protocol and its ratio to plaintext (goal: each
# loses <= 15%).
# Usage: bench/warm_path_tls.sh   (N=300000 ROUNDS=3 by default). Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-300000}
ROUNDS=${ROUNDS:-3}
PORT=19692
ROOT=$PWD

source bench/scratch.sh
cargo build --release -q -p agent -p collector

kafka start
secrets=$work/kafka/secrets
lines_dir=$work/lines
hour=$(date -u +%Y-%m-%d-%H)
mkdir -p "$lines_dir"
python3 bench/gen_log_lines.py "$N" >"$lines_dir/agent.$hour.log"
echo "warm_path_tls: $N lines, $(stat -c %s "$lines_dir/agent.$hour.log") bytes, $ROUNDS rounds" >&2

# The flags of each protocol, for a principal (imds-agent or imds-collector).
flags() {
    local protocol=$1 who=$2
    case $protocol in
    plaintext) echo "--kafka-brokers 127.0.0.1:$PORT" ;;
    sasl_ssl) echo "--kafka-brokers 127.0.0.1:$((PORT + 2)) --kafka-security-protocol sasl_ssl --kafka-ca-file $secrets/ca.pem --kafka-sasl-username $who --kafka-sasl-password-file $secrets/$who.password" ;;
    ssl) echo "--kafka-brokers 127.0.0.1:$((PORT + 3)) --kafka-security-protocol ssl --kafka-ca-file $secrets/ca.pem --kafka-cert-file $secrets/$who.pem --kafka-key-file $secrets/$who.key" ;;
    esac
}

BATCH=50000
full=$((N / BATCH * BATCH))
results=$work/results
: >"$results"
for round in $(seq 0 "$ROUNDS"); do
    for protocol in plaintext sasl_ssl ssl; do
        topic=imds.logs.bench.$protocol.$round
        kafka topic "$topic" 1 >/dev/null 2>&1
        # Shipper: a data directory holding the lines as the open hour's log (not rolled meanwhile).
        data=$work/ship-$protocol-$round
        mkdir -p "$data/logs"
        cp "$lines_dir/agent.$hour.log" "$data/logs/"
        # shellcheck disable=SC2046
        target/release/agent --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:19703 --data-dir "$data" \
            $(flags "$protocol" imds-agent) --kafka-topic "$topic" --machine bench-host 2>"$work/ship.err" &
        pids+=($!)
        until curl -sf http://127.0.0.1:19703/metrics >/dev/null; do sleep 0.02; done
        ship_s=$(wait_metric 127.0.0.1:19703 agent_shipper_delivered_events_total "$N")
        kill "${pids[-1]}"
        wait "${pids[-1]}" 2>/dev/null || true
        rm -rf "$data"
        # Collector.
        # shellcheck disable=SC2046
        target/release/collector $(flags "$protocol" imds-collector) --topic "$topic" \
            --group "imds-collector-bench-$protocol-$round" --out "$work/store-$protocol-$round" \
            --metrics-listen 127.0.0.1:19704 --flush-interval 600s --max-batch-rows $BATCH 2>"$work/collector.err" &
        pids+=($!)
        until curl -sf http://127.0.0.1:19704/metrics >/dev/null; do sleep 0.02; done
        wait_metric 127.0.0.1:19704 collector_written_rows_total 1 >/dev/null
        first=$(metric 127.0.0.1:19704 collector_written_rows_total | awk '{ printf "%d", $1 }')
        collect_s=$(wait_metric 127.0.0.1:19704 collector_written_rows_total "$full")
        kill "${pids[-1]}"
        wait "${pids[-1]}" 2>/dev/null || true
        rm -rf "$work/store-$protocol-$round"
        ship_rate=$(awk -v n="$N" -v s="$ship_s" 'BEGIN { printf "%.0f", n / s }')
        collect_rate=$(awk -v n="$((full - first))" -v s="$collect_s" 'BEGIN { printf "%.0f", n / s }')
        [ "$round" = 0 ] || echo "$protocol $ship_rate $collect_rate" >>"$results"
        echo "round $round$([ "$round" = 0 ] && echo ' (warm-up)') $protocol: shipper $ship_rate events/s, collector $collect_rate events/s" >&2
    done
done

python3 - "$results" "$N" "$ROUNDS" "$(nproc)" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
n, rounds, cores = sys.argv[2], sys.argv[3], sys.argv[4]
def median(protocol, column):
    return statistics.median(float(r[column]) for r in rows if r[0] == protocol)
base = {column: median("plaintext", column) for column in (1, 2)}
print(f"\nMachine: {cores} cores. N={n} lines per run, {rounds} interleaved rounds, medians.\n")
print("| protocol | shipper events/s | vs plaintext | collector events/s | vs plaintext |")
print("|---|---|---|---|---|")
for protocol in ("plaintext", "sasl_ssl", "ssl"):
    ship, collect = median(protocol, 1), median(protocol, 2)
    print(f"| {protocol} | {ship:,.0f} | {ship / base[1]:.2f} | {collect:,.0f} | {collect / base[2]:.2f} |")
PY
