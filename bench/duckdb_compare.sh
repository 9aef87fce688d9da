#!/usr/bin/env bash
# The cold path and `query` against DuckDB (PyPI `duckdb`), same files, same run: see the header
# of bench/duckdb_compare.py. Builds the release binaries, installs duckdb into .cache/bench-py,
# generates the inputs under .cache/bench-data (kept between runs; about 4 GB), prints the tables
# that go into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p agent -p collector -p bench -p query
source bench/python_env.sh
exec .cache/bench-py/bin/python bench/duckdb_compare.py \
    --query-bin target/release/query --roll-bin target/release/roll_file \
    --loggen-bin target/release/loggen --work .cache/bench-data "$@"
