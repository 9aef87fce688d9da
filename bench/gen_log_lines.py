"""Writes N realistic agent log lines (INFO request events of the shared record) to stdout, as the
agent's log writer would: increasing seq, one hour of timestamps, a spread of paths and statuses.
Deterministic. Usage: python3 bench/gen_log_lines.py N [HOUR=2026-01-01T00]"""
import json
import random
import sys
import uuid

n = int(sys.argv[1])
hour = sys.argv[2] if len(sys.argv) > 2 else "2026-01-01T00"
rng = random.Random(7)
paths = ["/metadata/instance", "/metadata/instance/compute", "/metadata/instance/compute/vmId",
         "/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress", "/metadata/versions"]
versions = ["2017-08-01", "2019-06-01", "2020-09-01", "2021-02-01", "2023-07-01", "2025-04-07"]
statuses = [200] * 90 + [400] * 4 + [404] * 3 + [429] * 2 + [500]
out = sys.stdout
seq = 1_767_225_600_000_000
for i in range(n):
    micros = i * 3_600_000_000 // n
    ts = f"{hour}:{micros // 60_000_000:02d}:{(micros // 1_000_000) % 60:02d}.{micros % 1_000_000:06d}Z"
    record = {
        "seq": seq + i, "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "timestamp": ts,
        "level": "INFO", "target": "imds::request", "message": "request served", "cluster": "bench",
        "machine": "bench-host", "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "method": "GET", "path": rng.choice(paths), "api_version": rng.choice(versions),
        "format": rng.choice(["json", "text"]), "status": rng.choice(statuses),
        "latency_us": int(rng.lognormvariate(4.5, 0.6)), "response_bytes": rng.randint(16, 3000),
        "caller": f"10.0.{rng.randint(0, 3)}.{rng.randint(4, 250)}",
    }
    out.write(json.dumps(record, separators=(",", ":")))
    out.write("\n")
