#!/usr/bin/env bash
# The cold path and `query` against DuckDB (PyPI `duckdb`), same files, same run: see the header
# of bench/duckdb_compare.py. Builds the release binaries, installs duckdb into .cache/bench-py,
# generates the inputs under .cache/bench-data (kept between runs; about 4 GB), prints the tables
# that go into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p agent -p collector -p bench -p query
if ! .cache/bench-py/bin/python -c 'import duckdb, pytz, pyarrow' 2>/dev/null; then
    [ -x .cache/bench-py/bin/python ] || /usr/bin/python3 -m venv .cache/bench-py
    # pytz: DuckDB's Python API needs it to return timestamps with a time zone; pyarrow
    # writes the one-file-per-day copy (--day-files).
    .cache/bench-py/bin/pip install -q "duckdb==2.0.0" pytz "pyarrow==26.0.1"
fi
echo "machine: $(nproc) cores, $(.cache/bench-py/bin/python -c 'import duckdb; print("duckdb", duckdb.__version__)'), $(date -u +%FT%TZ)"
exec .cache/bench-py/bin/python bench/duckdb_compare.py \
    --query-bin target/release/query --roll-bin target/release/roll_file \
    --loggen-bin target/release/loggen --work .cache/bench-data "$@"
