"""Reads the warm store's Delta table over and over with another engine, as a user would point it
at the store: Apache Spark with Delta Lake (Delta's reference implementation) or the Python
`deltalake` package. Prints one JSON line per read ({"rows", "distinct"}), {"ready": true} after
the first read (the engine is warm), and the ids of the last read at the end.

usage: read_table.py spark|deltalake TABLE_PATH SECONDS   (Spark's jars in $DELTA_JARS)
"""
import glob
import json
import os
import sys
import time

engine, table, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])

if engine == "spark":
    from pyspark.sql import SparkSession

    jars = sorted(glob.glob(os.path.join(os.environ["DELTA_JARS"], "*.jar")))
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("warm-store-reader")
        .config("spark.jars", ",".join(jars))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog",
            "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        )
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")

    def read():
        frame = spark.read.format("delta").load(table)
        return [row.id for row in frame.selectExpr("lower(hex(id)) AS id").collect()]

elif engine == "deltalake":
    from deltalake import DeltaTable

    def read():
        ids = DeltaTable(table).to_pyarrow_table(columns=["id"]).column("id")
        return [bytes(value).hex() for value in ids.to_pylist()]

else:
    sys.exit(f"unknown engine {engine}")

ids = read()
print(json.dumps({"rows": len(ids), "distinct": len(set(ids))}), flush=True)
print(json.dumps({"ready": True}), flush=True)
end = time.time() + seconds
while time.time() < end:
    ids = read()
    print(json.dumps({"rows": len(ids), "distinct": len(set(ids))}), flush=True)
print(json.dumps({"ids": sorted(ids)}), flush=True)
# Leave without the interpreter's teardown: deltalake's native threads sometimes abort the process
# there ("terminate called without an active exception") after every read has succeeded.
sys.stdout.flush()
os._exit(0)
