#!/usr/bin/env bash
# The suite's mutation tests run for longer: the same seeded mutators (damaged Parquet files and
# Delta commits through `query`, mutated HTTP requests through the agent's metadata and admin
# APIs, mutated PostgreSQL startup and query messages through `query serve`), each with CASES
# cases instead of the suite's few dozen. One seed for the run, printed first: a failure is
# reproduced with MUTATION_SEED=<seed> and the same CASES. Debug build, as the tests run.
# Usage: bench/mutations.sh   (CASES=2000 SEED=<now>)
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=${CASES:-2000}
SEED=${SEED:-$(date +%s%N)}
echo "mutation run: seed $SEED, $CASES cases per mutator" >&2
export MUTATION_SEED=$SEED MUTATION_CASES=$CASES
run() {
    local package=$1 test=$2 filter=$3
    local started=$SECONDS
    cargo test -q -p "$package" --test "$test" "$filter" -- --test-threads 1 >&2
    echo "  $filter: passed in $((SECONDS - started)) s" >&2
}
# Parquet: 2 x CASES files (footer, data pages); Delta: CASES commits.
run query sql mutations::damaged
# HTTP: CASES requests, half metadata API, half admin API.
run agent running_agent mutated_requests
# PostgreSQL: CASES startup messages and CASES query messages.
run query sql serve_mutations::
echo "mutation run: seed $SEED, $CASES cases per mutator: none failed" >&2
