#!/usr/bin/env bash
# Metadata API benchmark: requests/s and latency of one leaf read over loopback, side by side in
# the same run with
#   - the ceiling: a minimal hyper server answering 200 with a body of the same size
#     (bench/src/bin/static_server.rs);
#   - the agent with all telemetry on (metrics, one INFO log event per request, debug threshold);
#   - the agent with metrics and logging off (what telemetry costs);
#   - the peer a user would pick for a local metadata emulator: AWS's amazon-ec2-metadata-mock
#     v1.13.0 (Go, from the Go module proxy), serving /latest/meta-data/instance-id.
# Peak: wrk, closed loop, $CONNS connections for $DURATION s. Latency at half of each target's
# peak: oha at a fixed rate with latency correction (no coordinated omission).
# Peaks are measured ROUNDS times, the targets taking turns, and the median is reported (single
# runs on this 2-core machine moved by up to 25%).
# Usage: bench/metadata_api.sh   (DURATION=15 CONNS=32 ROUNDS=3 by default). Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
ROOT=$PWD

if ! command -v wrk >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
OHA=$ROOT/.cache/tools/bin/oha
[ -x "$OHA" ] || cargo install oha --locked --root "$ROOT/.cache/tools"
PEER=$ROOT/.cache/tools/bin/ec2-metadata-mock
[ -x "$PEER" ] || GOBIN="$ROOT/.cache/tools/bin" go install github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@v1.13.0
cargo build --release -q -p agent -p collector -p bench -p query

source bench/scratch.sh

QUERY='/metadata/instance/compute/vmId?api-version=2021-02-01&format=text'
target/release/agent --listen 127.0.0.1:18181 --metrics-listen 127.0.0.1:19181 --rate-limit 0 \
    --data-dir "$work/on" --cluster bench --machine bench 2>"$work/on.err" &
pids+=($!)
target/release/agent --listen 127.0.0.1:18182 --rate-limit 0 --disable-metrics --log-level off \
    --data-dir "$work/off" --cluster bench --machine bench 2>"$work/off.err" &
pids+=($!)
sleep 1
BODY=$(curl -sf -H 'Metadata: true' "http://127.0.0.1:18181$QUERY")
target/release/static_server 127.0.0.1:18183 "${#BODY}" >/dev/null &
pids+=($!)
(cd "$work" && exec "$PEER" -n 127.0.0.1 -p 18184 >"$work/peer.out" 2>&1) &
pids+=($!)
sleep 1

# name -> url
declare -A URL=(
    [ceiling]="http://127.0.0.1:18183$QUERY"
    [agent]="http://127.0.0.1:18181$QUERY"
    [agent-no-telemetry]="http://127.0.0.1:18182$QUERY"
    [peer-ec2-metadata-mock]="http://127.0.0.1:18184/latest/meta-data/instance-id"
)
ORDER=(ceiling agent agent-no-telemetry peer-ec2-metadata-mock)
declare -A RPS P50 P99 HALF_P50 HALF_P99 ALL

to_ms() { # wrk latency (e.g. 312.00us, 1.20ms, 2.00s) -> ms
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

declare -A SAMPLES
for round in $(seq "$ROUNDS"); do
    for name in "${ORDER[@]}"; do
        url=${URL[$name]}
        curl -sf -H 'Metadata: true' "$url" >/dev/null
        out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H 'Metadata: true' "$url")
        rps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")
        errors=$(awk '/Non-2xx/ { print $4 }' <<<"$out")
        [ -z "$errors" ] || { echo "$name: $errors non-2xx responses" >&2; exit 1; }
        SAMPLES[$name]="${SAMPLES[$name]:-} $rps:$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")"):$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
        echo "round $round $name: wrk $rps req/s" >&2
    done
done
for name in "${ORDER[@]}"; do
    # The median round by req/s, with that round's latencies.
    median=$(tr ' ' '\n' <<<"${SAMPLES[$name]}" | grep . | sort -t: -k1,1n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }')
    IFS=: read -r RPS[$name] P50[$name] P99[$name] <<<"$median"
    ALL[$name]=$(tr ' ' '\n' <<<"${SAMPLES[$name]}" | grep . | cut -d: -f1 | paste -sd/)
    url=${URL[$name]}
    half=$(( ${RPS[$name]} / 2 ))
    json=$("$OHA" -z "${DURATION}s" -q "$half" -c "$CONNS" --latency-correction --no-tui \
        --output-format json -H 'Metadata: true' "$url")
    HALF_P50[$name]=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f" % (d["latencyPercentiles"]["p50"]*1000))' <<<"$json")
    HALF_P99[$name]=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f" % (d["latencyPercentiles"]["p99"]*1000))' <<<"$json")
    ok=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["statusCodeDistribution"].get("200", 0), sum(d["statusCodeDistribution"].values()))' <<<"$json")
    echo "$name: median ${RPS[$name]} req/s of ${ALL[$name]}; oha at $half req/s: 200s/all = $ok" >&2
done

dropped=$(curl -sf http://127.0.0.1:19181/metrics | awk '$1 == "agent_log_dropped_events_total" { print $2 }')
events=$(curl -sf http://127.0.0.1:19181/metrics | awk '/^agent_log_events_total\{level="INFO"\}/ { print $2 }')
cores=$(nproc)
echo
echo "Machine: $cores cores; wrk -t1 -c$CONNS -d${DURATION}s, $ROUNDS rounds (median); oha -c$CONNS at half of each target's median peak, ${DURATION}s"
echo "Request: GET $QUERY (body ${#BODY} bytes)"
echo
echo "| target | peak req/s (median) | rounds | ratio to ceiling | ratio to peer | p50 ms at peak | p99 ms at peak | p50 ms at half peak | p99 ms at half peak |"
echo "|---|---|---|---|---|---|---|---|---|"
for name in "${ORDER[@]}"; do
    ratio=$(awk -v a="${RPS[$name]}" -v b="${RPS[ceiling]}" 'BEGIN { printf "%.2f", a / b }')
    peer=$(awk -v a="${RPS[$name]}" -v b="${RPS[peer-ec2-metadata-mock]}" 'BEGIN { printf "%.2f", a / b }')
    echo "| $name | ${RPS[$name]} | ${ALL[$name]} | $ratio | $peer | ${P50[$name]} | ${P99[$name]} | ${HALF_P50[$name]} | ${HALF_P99[$name]} |"
done
cost=$(awk -v a="${RPS[agent]}" -v b="${RPS[agent-no-telemetry]}" 'BEGIN { printf "%.1f", (1 - a / b) * 100 }')
echo
echo "Telemetry costs ${cost}% of the agent's own peak (agent vs agent-no-telemetry)."
echo
echo "Agent with telemetry: $events INFO events logged, $dropped dropped."
