"""What the Python benchmarks share: medians of timed runs, and DuckDB on a store's data files."""
import statistics
import time

import duckdb


def median_of(fn, runs):
    """Median seconds of `runs` calls of `fn` after one warm-up (page cache, lazy initialisation),
    and the last call's result."""
    fn()
    times = []
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def duck_run(store, sql):
    """`sql` over `logs`, the store's data files read by DuckDB with hive partitioning, on a fresh
    connection; rows as `query` prints them in CSV (NULL is an empty field)."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW logs AS SELECT * FROM read_parquet('{store}/date=*/hour=*/cluster=*/*.parquet', "
                "hive_partitioning = true, hive_types_autocast = false)")
    rows = con.execute(sql).fetchall()
    con.close()
    return [["" if v is None else str(v) for v in row] for row in rows]
