# Sourced by the benchmark scripts: a temporary $work directory, the processes a benchmark
# starts ($pids, killed on exit), and a scratch Kafka broker of the benchmark's own on $PORT
# (`kafka start|stop|topic NAME PARTITIONS`, stopped on exit), so a benchmark never touches the
# broker the tests use.
work=$(mktemp -d)
pids=()
kafka() { KAFKA_PORT=$PORT KAFKA_DIR=$work/kafka scripts/kafka "$@"; }
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    if [ -d "$work/kafka" ]; then kafka stop || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
# A Prometheus page's value of one series, the time now, and how long until a counter reaches a
# target (`wait_metric ADDR NAME TARGET` prints the seconds waited).
metric() { curl -sf "http://$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }
now() { date +%s.%N; }
wait_metric() { # addr name target -> seconds waited
    local start
    start=$(now)
    until [ "$(metric "$1" "$2" | awk '{ printf "%d", $1 }')" -ge "$3" ] 2>/dev/null; do sleep 0.05; done
    awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'
}
# kcat (Debian), the benchmarks' Kafka producer peer and bulk loader.
need_kcat() {
    command -v kcat >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null; }
}
# moto's S3 server (installed by scripts/install-test-deps) on $S3_PORT with bucket $1, its pid
# in $moto_pid, and the AWS_* variables that point the clients started afterwards at it.
s3_start() {
    [ -x .cache/moto/bin/moto_server ] || scripts/install-test-deps
    .cache/moto/bin/moto_server -H 127.0.0.1 -p "$S3_PORT" >/dev/null 2>&1 &
    moto_pid=$!
    pids+=("$moto_pid")
    until curl -sf "http://127.0.0.1:$S3_PORT/" >/dev/null; do sleep 0.1; done
    curl -sf -X PUT "http://127.0.0.1:$S3_PORT/$1" >/dev/null
    export AWS_ENDPOINT=http://127.0.0.1:$S3_PORT AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=test \
        AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
}
