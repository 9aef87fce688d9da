"""Months across the fleet: `query` answered from the rollups and pattern ids, against `query` on
raw rows and DuckDB on the same raw files, in the same run; and what the rollups cost compaction.

1. Store: `loggen --format delta` writes DAYS days x MACHINES machines x EVENTS events per
   machine-hour (default 90 x 300 x 100: 64.8 million rows, 30 clusters), one file per hour and
   cluster; `collector compact` then builds the rollups and pattern ids of every hour (timed).
   Rollup bytes per raw row, and each rollup's rows per raw row, are printed.
2. Analyses over the whole range: the seed analyses (responses by status, requests by path,
   api-versions asked for, per-cluster daily p90 latency, top error patterns of a cluster) and
   each panel of `dashboards/logs.json` (expanded as Grafana sends it for the whole range at a
   one-day interval, every cluster and machine selected). Each: `query` as a whole process with
   the rollups (default), `query` with `SET logs.rollups = off` (raw rows), and DuckDB on the
   table's data files (read_parquet, hive partitioning; its delta extension cannot be downloaded
   here) on a fresh connection, medians of --runs runs after a warm-up. Answers: rollups equal
   raw (counts exact; percentiles within the sketch's 1% of DuckDB's exact quantile_cont).
3. Compaction cost: a store of --compact-days days written as --flushes flushes per hour and
   cluster (the small files compaction rewrites), compacted once: time rewriting files against
   time building the rollups and pattern ids of the same hours.

Usage: python bench/rollups_compare.py --query-bin B --collector-bin B --loggen-bin B --work DIR
Prints markdown tables (bench/rollups.sh runs it with the release binaries).
"""
import argparse
import csv
import datetime
import io
import json
import os
import re
import shutil
import subprocess
import time

import side_by_side

parser = argparse.ArgumentParser()
parser.add_argument("--query-bin", required=True)
parser.add_argument("--collector-bin", required=True)
parser.add_argument("--loggen-bin", required=True)
parser.add_argument("--work", required=True)
parser.add_argument("--runs", type=int, default=5)
parser.add_argument("--days", type=int, default=90)
parser.add_argument("--machines", type=int, default=300)
parser.add_argument("--events", type=int, default=100)
parser.add_argument("--compact-days", type=int, default=7)
parser.add_argument("--flushes", type=int, default=6)
parser.add_argument("--rollups-only", action="store_true",
                    help="time only `query` with the rollups (raw and DuckDB times do not depend on them)")
args = parser.parse_args()
os.makedirs(args.work, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
START = "2026-01-01"


def median_of(fn):
    return side_by_side.median_of(fn, args.runs)


def du(path):
    total = 0
    for root, _, names in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, n)) for n in names if n.endswith(".parquet"))
    return total


def store_with_rollups(name, days, flushes):
    """A loggen Delta store, compacted (rollups and pattern ids built); the compaction's summary."""
    store = os.path.join(args.work, name)
    marker = os.path.join(store, ".complete")
    if not os.path.exists(marker):
        shutil.rmtree(store, ignore_errors=True)
        subprocess.run([args.loggen_bin, "--days", str(days), "--machines", str(args.machines),
                        "--events-per-hour", str(args.events), "--out", store, "--format", "delta",
                        "--start", START, "--flushes-per-hour", str(flushes)], check=True)
        started = time.perf_counter()
        done = subprocess.run([args.collector_bin, "compact", "--out", store],
                              check=True, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        with open(marker, "w") as out:
            out.write(f"{elapsed}\n{done.stderr.strip().splitlines()[-1]}\n")
    with open(marker) as f:
        elapsed, summary = f.read().splitlines()[:2]
    return store, float(elapsed), summary


def our_run(store, sql, rollups=True):
    # Bounded: a statement the rollups cannot answer reads 64.8 M rows (and one was killed by
    # the kernel for memory, see BENCHMARKS.md).
    if rollups:
        out = subprocess.run([args.query_bin, "--data", store, "--format", "csv", sql],
                             check=True, capture_output=True, text=True, timeout=120).stdout
    else:
        out = subprocess.run([args.query_bin, "--data", store, "--format", "csv"],
                             input=f"SET logs.rollups = off;\n{sql};\n",
                             check=True, capture_output=True, text=True, timeout=120).stdout
    return list(csv.reader(io.StringIO(out)))[1:]


def our_patterns(store, cluster):
    out = subprocess.run([args.query_bin, "--data", store, "--format", "csv", "patterns",
                          "--cluster", cluster, "--from", f"{START}T00:00:00Z", "--to", END,
                          "--level", "warn", "--limit", "20"],
                         check=True, capture_output=True, text=True).stdout
    return list(csv.reader(io.StringIO(out)))[1:]


duck_run = side_by_side.duck_run


# -- 1. the store --------------------------------------------------------------------------------
store, compact_s, summary = store_with_rollups(f"rollups-{args.days}d", args.days, 1)
rows = args.days * 24 * args.machines * args.events
END = f"{(datetime.date.fromisoformat(START) + datetime.timedelta(days=args.days)).isoformat()}T00:00:00Z"
raw_bytes = sum(du(os.path.join(store, d)) for d in os.listdir(store) if d.startswith("date="))
rollup_bytes = du(os.path.join(store, "_rollups"))
print(f"store: {rows:,} rows over {args.days} days, {args.machines} machines, "
      f"{args.machines // 10} clusters; raw Parquet {raw_bytes / 1e9:.2f} GB "
      f"({raw_bytes / rows:.1f} B/row); rollups and dictionary {rollup_bytes / 1e6:.1f} MB "
      f"({rollup_bytes / rows:.3f} B per raw row, {rollup_bytes / raw_bytes:.4f} of the raw bytes)")
print(f"compaction of the whole store (one file per hour and cluster: rollups and pattern ids "
      f"only): {compact_s:.1f} s\n  {summary}")

# -- 2. analyses ---------------------------------------------------------------------------------
clusters = [f"cluster-{c}" for c in range(args.machines // 10)]
machines = [f"host-{m:03}" for m in range(args.machines)]


def expand(sql, interval=86400):
    sql = (sql.replace("$__interval", f"{interval}s")
           .replace("$__timeFrom()", f"'{START}T00:00:00Z'")
           .replace("$__timeTo()", f"'{END}'")
           .replace("${cluster:csv}", ",".join(clusters))
           .replace("${machine:csv}", ",".join(machines))
           .replace("${level:csv}", "ERROR,WARN,INFO")
           .replace("$cluster", ",".join(f"'{c}'" for c in clusters))
           .replace("$machine", ",".join(f"'{m}'" for m in machines))
           .replace("$level", "'ERROR','WARN','INFO'"))
    sql = re.sub(r'\$__timeFilter\(([^)]*)\)',
                 lambda m: f"{m.group(1)} BETWEEN '{START}T00:00:00Z' AND '{END}'", sql)
    sql = re.sub(r'\$__timeGroupAlias\(([^,]*),[^)]*\)',
                 lambda m: f"floor(extract(epoch from {m.group(1)})/{interval})*{interval} AS \"time\"", sql)
    assert "$" not in sql, sql
    return sql


def for_duckdb(sql):
    # DuckDB: quantile_cont is exact; its timestamps compare with plain strings.
    return (sql.replace("approx_percentile_cont(latency_us, 0.9)", "quantile_cont(latency_us, 0.9)"))


with open(os.path.join(here, "..", "dashboards", "logs.json")) as f:
    board = json.load(f)
queries = [
    ("responses by status", "SELECT status, count(*) AS n FROM logs GROUP BY status ORDER BY status"),
    ("requests by path", "SELECT path, count(*) AS n FROM logs WHERE path IS NOT NULL GROUP BY path ORDER BY path"),
    ("api-versions asked for", "SELECT api_version, count(*) AS n FROM logs WHERE path IS NOT NULL GROUP BY api_version ORDER BY api_version"),
    ("per-cluster daily p90", "SELECT cluster, date, approx_percentile_cont(latency_us, 0.9) AS p90 FROM logs GROUP BY cluster, date ORDER BY cluster, date"),
]
for panel in board["panels"]:
    for target in panel["targets"]:
        if panel["title"] == "Logs":
            continue  # the newest 1,000 lines: a lookup, not an aggregation
        queries.append((f"panel: {panel['title']}", expand(target["rawSql"])))

print("\n| analysis (whole range) | query, rollups (s) | query, raw (s) | DuckDB (s) | raw / rollups | DuckDB / rollups | answers |")
print("|---|---|---|---|---|---|---|")
for name, sql in queries:
    try:
        t_on, on_rows = median_of(lambda: our_run(store, sql))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as failed:
        reason = "over 120 s" if isinstance(failed, subprocess.TimeoutExpired) else f"exit {failed.returncode}"
        print(f"| {name} | failed ({reason}) | | | | | not answered |")
        continue
    if args.rollups_only:
        print(f"| {name} | {t_on:.3f} | - | - | - | - | not compared |")
        continue
    t_off, off_rows = median_of(lambda: our_run(store, sql, rollups=False))
    if "log_pattern" in sql:
        t_duck, duck_rows = None, []  # DuckDB has no template miner
    else:
        t_duck, duck_rows = median_of(lambda: duck_run(store, for_duckdb(sql)))
    if "p90" in name:
        worst = max(abs(float(a[-1]) - float(b[-1])) / float(b[-1]) for a, b in zip(on_rows, duck_rows))
        same = f"p90 within {worst * 100:.2f}% of exact" if len(on_rows) == len(duck_rows) else "DIFFER"
    elif "pattern" in name:
        same = f"{len(on_rows)} templates, raw {len(off_rows)}"
    else:
        same = "equal to raw" if on_rows == off_rows else "DIFFER from raw"
    duck = ("n/a", "n/a") if t_duck is None else (f"{t_duck:.3f}", f"{t_duck / t_on:.1f}x")
    print(f"| {name} | {t_on:.3f} | {t_off:.3f} | {duck[0]} | {t_off / t_on:.1f}x | {duck[1]} | {same} |")

cluster = clusters[len(clusters) // 2]
t_pat, pat_rows = median_of(lambda: our_patterns(store, cluster))
if args.rollups_only:
    print(f"| top error patterns of {cluster} (`query patterns --level warn`) | {t_pat:.3f} | | | | | "
          f"{len(pat_rows)} templates |")
duck_sql = (f"SELECT count(*) FROM logs WHERE cluster = '{cluster}' AND level IN ('WARN', 'ERROR')")
t_duck, duck_rows = (0, [[0]]) if args.rollups_only else median_of(lambda: duck_run(store, duck_sql))
total = sum(int(r[0]) for r in pat_rows)
if not args.rollups_only:
    print(f"| top error patterns of {cluster} (`query patterns --level warn`) | {t_pat:.3f} | | "
          f"{t_duck:.3f} (count only) | | {t_duck / t_pat:.1f}x | {len(pat_rows)} templates, "
          f"{total} lines (DuckDB counts {duck_rows[0][0]}) |")

# -- 3. compaction cost --------------------------------------------------------------------------
store, compact_s, summary = store_with_rollups(f"rollups-compact-{args.compact_days}d", args.compact_days, args.flushes)
rewrite = float(re.search(r"files rewritten into [0-9]+\) in ([0-9.]+) s;", summary).group(1))
rollup = float(re.search(r"rollup hours built .*?\) and [0-9]+ rollup days in ([0-9.]+) s;", summary).group(1))
print(f"\ncompaction of {args.compact_days} days written as {args.flushes} flushes per hour and cluster: "
      f"rewrite {rewrite:.1f} s, rollups and pattern ids {rollup:.1f} s "
      f"(+{rollup / rewrite * 100:.0f}% over the rewrite)\n  {summary}")
