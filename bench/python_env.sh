# Sourced by the benchmarks that compare with DuckDB: the Python they run in, .cache/bench-py,
# with DuckDB and what its Python API needs (pytz: timestamps with a time zone; pyarrow: the
# one-file-per-day copy of bench/duckdb_compare.py), installed once; prints the machine line.
if ! .cache/bench-py/bin/python -c 'import duckdb, pytz, pyarrow' 2>/dev/null; then
    [ -x .cache/bench-py/bin/python ] || /usr/bin/python3 -m venv .cache/bench-py
    .cache/bench-py/bin/pip install -q "duckdb==2.0.0" pytz "pyarrow==26.0.1"
fi
echo "machine: $(nproc) cores, $(.cache/bench-py/bin/python -c 'import duckdb; print("duckdb", duckdb.__version__)'), $(date -u +%FT%TZ)"
