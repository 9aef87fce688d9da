#!/usr/bin/env bash
# Months across the fleet from the rollups and pattern ids: see the header of
# bench/rollups_compare.py. Builds the release binaries, installs duckdb into .cache/bench-py,
# generates the stores under .cache/bench-data (kept between runs; about 4 GB for 90 days x 300
# machines x 100 events per machine-hour), prints the tables that go into BENCHMARKS.md.
# Usage: bench/rollups.sh [--days 90 --machines 300 --events 100 --runs 5 --compact-days 7 --flushes 6]
#        [--rollups-only: time only `query` with the rollups, not raw rows and DuckDB]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p collector -p bench -p query
source bench/python_env.sh
exec .cache/bench-py/bin/python bench/rollups_compare.py \
    --query-bin target/release/query --collector-bin target/release/collector \
    --loggen-bin target/release/loggen --work .cache/bench-data "$@"
