#!/usr/bin/env bash
# The `patterns` miner against Drain3 (PyPI drain3 0.9.11) on ../shared/loghub_2k, same run:
# grouping accuracy per dataset beside the published Drain figure, and lines/s with the ratio.
# Builds the release log_patterns binary, installs drain3 into .cache/bench-py, prints the
# table that goes into BENCHMARKS.md. REPEAT (default 20): fresh runs per dataset, best kept.
set -euo pipefail
cd "$(dirname "$0")/.."
# The same package set as the other benchmarks, so their release build is reused.
cargo build --release -q -p agent -p collector -p bench -p query
if [ ! -x .cache/bench-py/bin/python ]; then
    /usr/bin/python3 -m venv .cache/bench-py
fi
.cache/bench-py/bin/python -c 'import drain3' 2>/dev/null || .cache/bench-py/bin/pip install -q "drain3==0.9.11"
loghub=${LOGHUB_2K:-../shared/loghub_2k}
echo "machine: $(nproc) cores, drain3 $(.cache/bench-py/bin/pip show drain3 | sed -n 's/^Version: //p'), $(.cache/bench-py/bin/python --version), $(date -u +%FT%TZ)"
exec .cache/bench-py/bin/python bench/log_patterns_compare.py \
    --loghub "$loghub" --ours target/release/log_patterns --repeat "${REPEAT:-20}"
