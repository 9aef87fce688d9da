#!/usr/bin/env bash
# What an agent costs a host when nothing happens: CPU per thread over WINDOW seconds (after
# SETTLE seconds of start-up) of one release agent with zero configuration and one shipping to a
# scratch Kafka broker (topic created, nothing to ship), both serving no requests. The agent runs
# on every host of the fleet, so its idle cost is multiplied by the fleet's size.
# Usage: bench/idle_agent.sh   (WINDOW=60 SETTLE=10). Ports 19892-19893 (Kafka and its controller), 19897-19900 (agents).
set -euo pipefail
cd "$(dirname "$0")/.."
WINDOW=${WINDOW:-60}
SETTLE=${SETTLE:-10}
PORT=19892

source bench/scratch.sh
cargo build --release -q --workspace --bins
kafka start
kafka topic idle.logs 1

target/release/agent --listen 127.0.0.1:19897 --metrics-listen 127.0.0.1:19898 \
    --data-dir "$work/alone" 2>"$work/alone.err" &
alone=$!
pids+=("$alone")
target/release/agent --listen 127.0.0.1:19899 --metrics-listen 127.0.0.1:19900 \
    --data-dir "$work/shipping" --kafka-brokers "127.0.0.1:$PORT" --kafka-topic idle.logs \
    2>"$work/shipping.err" &
shipping=$!
pids+=("$shipping")
sleep "$SETTLE"
for pid in "$alone" "$shipping"; do
    kill -0 "$pid" 2>/dev/null || { echo "an agent exited at start:" >&2; cat "$work"/*.err >&2; exit 1; }
done

# CPU ticks (user + system) of every thread of a process: "tid name ticks" lines. The fields
# are counted after the name's closing parenthesis (a name may hold spaces).
threads() {
    for task in /proc/"$1"/task/*; do
        local ticks
        ticks=$(awk '{ sub(/^[^)]*\) /, ""); print $12 + $13 }' "$task/stat")
        echo "${task##*/} $(tr ' ' _ <"$task/comm") $ticks"
    done
}
threads "$alone" >"$work/alone.0"
threads "$shipping" >"$work/shipping.0"
sleep "$WINDOW"
threads "$alone" >"$work/alone.1"
threads "$shipping" >"$work/shipping.1"

hz=$(getconf CLK_TCK)
report() {
    echo "$1 ($WINDOW s idle, % of one core):"
    # Threads present at both reads; a thread's share, then the process's.
    join <(sort "$work/$1.0") <(sort "$work/$1.1") |
        awk -v hz="$hz" -v w="$WINDOW" '{ d = $5 - $3; total += d; printf "  %-18s %6.2f%%\n", $2, 100 * d / hz / w }
            END { printf "  %-18s %6.2f%%\n", "total", 100 * total / hz / w }'
}
echo "Machine: $(nproc) cores; release build; agents idle (no requests), Kafka on loopback."
report alone
report shipping
delivered=$(curl -sf http://127.0.0.1:19900/metrics | awk '$1 == "agent_shipper_delivered_events_total" { print $2 }')
echo "shipping agent: ${delivered:-0} start-up events delivered to Kafka (the shipper was live)"
