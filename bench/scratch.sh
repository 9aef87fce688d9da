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
# kcat (Debian), the benchmarks' Kafka producer peer and bulk loader.
need_kcat() {
    command -v kcat >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null; }
}
