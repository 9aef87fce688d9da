"""The cold path and `query` side by side with DuckDB, on the same files in the same run.

1. Roll: one hour of agent log lines (about 1 GB of JSON lines, bench/gen_log_lines.py) to
   Parquet with the agent's own roller (`roll_file`), versus DuckDB's
   COPY (SELECT * FROM read_json(...)) TO ... (FORMAT parquet, COMPRESSION zstd).
   Speed, output size, and the raw/Parquet size ratio; row counts checked equal.
2. Analyses over loggen stores of 30 and 90 days x 50 machines x 100 events/hour, written as the
   warm store's Delta table (one file per hour and cluster, as compaction leaves it); `query`
   reads the table through its log, DuckDB reads the same data files with read_parquet (hive
   partitioning, the log left out: DuckDB's delta extension is downloaded from DuckDB's own
   server at first use, which this machine cannot reach):
   the three from the seeds (responses by status, requests by path, api versions), a per-cluster
   daily p90 latency, a regex filter over one week, and a one-machine one-hour lookup. `query` is
   timed as a whole process (start, listing, planning, scan, printing CSV); DuckDB in-process on
   a fresh connection per run (view creation, glob, scan), which leaves out its interpreter's
   start: the comparison is conservative for `query`. Medians of --runs runs after one warm-up
   each; answers checked equal between the two.
3. With --day-files (needs pyarrow): the same rows again, one file per day and cluster instead of
   per hour and cluster (24x fewer files, the same bytes), the analyses but the lookup on both
   engines: how much of either engine's time is per file, and whether a coarser layout moves the
   ratio between them.

Usage: python bench/duckdb_compare.py --query-bin B --roll-bin B --loggen-bin B --work DIR
Prints markdown tables (bench/duckdb_compare.sh runs it with the release binaries).
"""
import argparse
import csv
import io
import os
import shutil
import subprocess
import sys

import duckdb

import side_by_side

parser = argparse.ArgumentParser()
parser.add_argument("--query-bin", required=True)
parser.add_argument("--roll-bin", required=True)
parser.add_argument("--loggen-bin", required=True)
parser.add_argument("--work", required=True)
parser.add_argument("--runs", type=int, default=3)
parser.add_argument("--raw-bytes", type=int, default=1_000_000_000)
parser.add_argument("--days", default="30,90")
# Also run the analyses on a copy of each store with one file per day and cluster (pyarrow).
parser.add_argument("--day-files", action="store_true")
args = parser.parse_args()
os.makedirs(args.work, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))


def median_of(fn):
    return side_by_side.median_of(fn, args.runs)


# -- 1. roll -------------------------------------------------------------------------------------
raw = os.path.join(args.work, "agent.2026-01-01-00.log")
if not os.path.exists(raw) or os.path.getsize(raw) < args.raw_bytes * 0.95:
    sample = subprocess.run([sys.executable, os.path.join(here, "gen_log_lines.py"), "10000"],
                            check=True, capture_output=True).stdout
    lines = int(args.raw_bytes / (len(sample) / 10000))
    print(f"generating {lines} lines into {raw}", file=sys.stderr)
    with open(raw + ".tmp", "wb") as out:
        subprocess.run([sys.executable, os.path.join(here, "gen_log_lines.py"), str(lines)],
                       check=True, stdout=out)
    os.replace(raw + ".tmp", raw)
raw_size = os.path.getsize(raw)

ours_out = os.path.join(args.work, "rolled-by-agent.parquet")
duck_out = os.path.join(args.work, "rolled-by-duckdb.parquet")


def roll_ours():
    if os.path.exists(ours_out):
        os.remove(ours_out)
    subprocess.run([args.roll_bin, raw, ours_out], check=True, capture_output=True)


def roll_duckdb():
    if os.path.exists(duck_out):
        os.remove(duck_out)
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * FROM read_json('{raw}')) TO '{duck_out}' "
                "(FORMAT parquet, COMPRESSION zstd)")
    con.close()


results_roll = []
for name, fn, out in (("agent roller", roll_ours, ours_out), ("DuckDB COPY", roll_duckdb, duck_out)):
    seconds, _ = median_of(fn)
    results_roll.append((name, seconds, os.path.getsize(out)))
con = duckdb.connect()
rows_ours = con.execute(f"SELECT count(*) FROM read_parquet('{ours_out}')").fetchone()[0]
rows_duck = con.execute(f"SELECT count(*) FROM read_parquet('{duck_out}')").fetchone()[0]
con.close()
assert rows_ours == rows_duck, (rows_ours, rows_duck)

print(f"\n### Roll: {raw_size / 1e9:.2f} GB of JSON lines ({rows_ours} rows) to Parquet\n")
print("| roller | median s | MB/s | Parquet bytes | raw / Parquet |")
print("|---|---|---|---|---|")
for name, seconds, size in results_roll:
    print(f"| {name} | {seconds:.2f} | {raw_size / seconds / 1e6:.0f} | {size:,} | {raw_size / size:.1f}x |")
ours, duck = results_roll
print(f"\nspeed ratio (agent / DuckDB, higher is better): {duck[1] / ours[1]:.2f}x; "
      f"size ratio (agent / DuckDB, lower is better): {ours[2] / duck[2]:.2f}x")

# Where the bytes are: compressed bytes per column, from each file's footer.
con = duckdb.connect()
sizes = {}
for name, path in (("agent", ours_out), ("duckdb", duck_out)):
    for column, size in con.execute(
            "SELECT path_in_schema, sum(total_compressed_size) FROM parquet_metadata(?) GROUP BY 1",
            [path]).fetchall():
        sizes.setdefault(column, {})[name] = size
# Same records: every id of one file is in the other (read back as UUIDs by both).
same_ids = con.execute(f"SELECT count(*) FROM read_parquet('{ours_out}') o "
                       f"JOIN read_parquet('{duck_out}') d ON o.id = d.id AND o.request_id = d.request_id"
                       ).fetchone()[0]
con.close()
assert same_ids == rows_ours, (same_ids, rows_ours)
print("\n| column | agent bytes | DuckDB bytes |")
print("|---|---|---|")
for column, by in sorted(sizes.items(), key=lambda kv: -kv[1].get("duckdb", 0)):
    print(f"| {column} | {by.get('agent', 0):,} | {by.get('duckdb', 0):,} |")

# -- 2. analyses ---------------------------------------------------------------------------------
QUERIES = [
    ("responses by status",
     "SELECT status, count(*) AS n FROM logs GROUP BY status ORDER BY status",
     None),
    ("requests by path",
     "SELECT path, count(*) AS n FROM logs WHERE path IS NOT NULL GROUP BY path ORDER BY n DESC, path",
     None),
    ("api versions asked for",
     "SELECT api_version, count(*) AS n FROM logs WHERE api_version IS NOT NULL "
     "GROUP BY api_version ORDER BY n DESC, api_version",
     None),
    ("per-cluster daily p90 latency",
     "SELECT cluster, date, approx_percentile_cont(latency_us, 0.9) AS p90 FROM logs "
     "WHERE latency_us IS NOT NULL GROUP BY cluster, date ORDER BY cluster, date",
     "SELECT cluster, date, approx_quantile(latency_us, 0.9) AS p90 FROM logs "
     "WHERE latency_us IS NOT NULL GROUP BY cluster, date ORDER BY cluster, date"),
    ("regex filter over one week",
     "SELECT count(*) AS n FROM logs WHERE date >= '2026-01-08' AND date <= '2026-01-14' "
     "AND regexp_like(path, 'compute/(vmId|tagsList)$')",
     "SELECT count(*) AS n FROM logs WHERE date >= '2026-01-08' AND date <= '2026-01-14' "
     "AND regexp_matches(path, 'compute/(vmId|tagsList)$')"),
    ("one machine, one hour",
     "SELECT * FROM logs WHERE date = '2026-01-20' AND hour = '13' AND cluster = 'cluster-1' "
     "AND machine = 'host-017' ORDER BY timestamp",
     None),
]
# Queries whose answers are compared exactly (the p90s are approximations by two algorithms).
EXACT = {"responses by status", "requests by path", "api versions asked for",
         "regex filter over one week"}


def our_run(store, sql):
    out = subprocess.run([args.query_bin, "--data", store, "--format", "csv", sql],
                         check=True, capture_output=True, text=True).stdout
    return list(csv.reader(io.StringIO(out)))[1:]


duck_run = side_by_side.duck_run


def write_day_files(hour_store, day_store):
    """The rows of `hour_store` again, one file per day and cluster (`date=D/hour=00/cluster=C`),
    sorted by time, with the collector's encodings: zstd, dictionaries but for the ids, `seq`
    and `timestamp`, which are delta-encoded. Written by pyarrow, read by both engines alike."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    by_day_and_cluster = {}
    for root, _, names in os.walk(hour_store):
        parts = dict(p.split("=", 1) for p in root.split(os.sep) if "=" in p)
        if "cluster" not in parts:
            continue  # the root, `date=`/`hour=` directories, the log's checkpoints
        for name in names:
            if name.endswith(".parquet"):
                key = (parts["date"], parts["cluster"])
                by_day_and_cluster.setdefault(key, []).append(os.path.join(root, name))
    not_dictionary = {"id", "request_id", "seq", "timestamp"}
    for (date, cluster), files in sorted(by_day_and_cluster.items()):
        rows = pa.concat_tables([pq.read_table(f) for f in sorted(files)]).sort_by("timestamp")
        out = os.path.join(day_store, f"date={date}", "hour=00", f"cluster={cluster}")
        os.makedirs(out, exist_ok=True)
        pq.write_table(rows, os.path.join(out, "part-0.parquet"), compression="zstd",
                       use_dictionary=[c for c in rows.column_names if c not in not_dictionary],
                       column_encoding={"seq": "DELTA_BINARY_PACKED",
                                        "timestamp": "DELTA_BINARY_PACKED"},
                       row_group_size=1 << 20)


def compare(store, label, queries):
    print(f"\n{label}\n")
    print("| analysis | query (s) | DuckDB (s) | DuckDB / query | rows out | answers |")
    print("|---|---|---|---|---|---|")
    sum_ours = sum_duck = 0.0
    for name, sql, duck_sql in queries:
        t_ours, ours_rows = median_of(lambda: our_run(store, sql))
        t_duck, duck_rows = median_of(lambda: duck_run(store, duck_sql or sql))
        sum_ours += t_ours
        sum_duck += t_duck
        if name in EXACT:
            same = "equal" if ours_rows == duck_rows else "DIFFER"
        else:
            same = "same count" if len(ours_rows) == len(duck_rows) else "DIFFER"
        print(f"| {name} | {t_ours:.3f} | {t_duck:.3f} | {t_duck / t_ours:.2f}x | {len(ours_rows)} | {same} |")
    print(f"| **total** | **{sum_ours:.2f}** | **{sum_duck:.2f}** | **{sum_duck / sum_ours:.2f}x** | | |")
    print(f"\n`query`'s total time: {sum_ours / sum_duck:.2f}x DuckDB's")


def ensure_store(store, write):
    """Writes `store` with `write(store)` unless a finished one (its `.complete` marker) is there:
    a half-written store, or one written by hand, would get a second copy of the rows."""
    if os.path.exists(os.path.join(store, ".complete")):
        return
    shutil.rmtree(store, ignore_errors=True)
    write(store)
    open(os.path.join(store, ".complete"), "w").close()


for days in [int(d) for d in args.days.split(",")]:
    store = os.path.join(args.work, f"loggen-delta-{days}d-50m")
    ensure_store(store, lambda out: subprocess.run(
        [args.loggen_bin, "--days", str(days), "--machines", "50", "--events-per-hour", "100",
         "--out", out, "--seed", "1", "--format", "delta"], check=True))
    total_rows = days * 24 * 50 * 100
    compare(store, f"### {days} days x 50 machines x 100 events/hour ({total_rows:,} rows)", QUERIES)
    if args.day_files:
        day_store = os.path.join(args.work, f"loggen-days-{days}d-50m")
        ensure_store(day_store, lambda out: write_day_files(store, out))
        # The lookup names an hour, which these files no longer have as a partition.
        compare(day_store, f"### The same {days} days, one file per day and cluster (hive, no Delta log)",
                [q for q in QUERIES if q[0] != "one machine, one hour"])
