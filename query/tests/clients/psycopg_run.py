"""psycopg_run: runs statements through psycopg 3 (extended protocol, server-side parameters)
and prints each result as one JSON line, for query's `serve` tests.

Usage: psycopg_run.py CONNINFO < statements.json   (a JSON array of [sql, params] pairs)
Output as pgx_run's: {"columns": [...], "rows": [...]} or {"error": {"code": ..., "message": ...}};
times as milliseconds since the epoch.
"""
import datetime
import decimal
import json
import sys

import psycopg


def value(v):
    if isinstance(v, datetime.datetime):
        return int(v.timestamp() * 1000)
    if isinstance(v, decimal.Decimal):
        return float(v)
    return v


def main():
    statements = json.load(sys.stdin)
    with psycopg.connect(sys.argv[1], autocommit=True) as conn:
        for sql, params in statements:
            try:
                # prepare=True: Parse/Bind/Execute with a named prepared statement, as drivers do.
                cur = conn.execute(sql, params, prepare=True)
                columns = [c.name for c in cur.description or []]
                rows = [[value(v) for v in row] for row in cur.fetchall()]
                print(json.dumps({"columns": columns, "rows": rows}), flush=True)
            except psycopg.Error as error:
                print(json.dumps({"error": {"code": error.sqlstate or "",
                                            "message": str(error).strip()}}), flush=True)


if __name__ == "__main__":
    main()
