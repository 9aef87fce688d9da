"""Drain3 (PyPI `drain3`), the reference template miner, on the Loghub 2k samples.

For each dataset of ../shared/loghub_2k: the `Content` column of the structured CSV (the
`<Content>` field of the dataset's log_format), masked with the dataset's regexes and mined
with its depth and similarity threshold (settings.json, the Drain authors' settings), through
drain3's TemplateMiner as users run it (masking included). Prints one JSON object per dataset:
grouping accuracy (the loghub metric, lines grouped by their cluster's final template) and
lines per second (best of --repeat fresh runs over the 2,000 lines).
"""

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter, defaultdict

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig


def grouping_accuracy(truth, parsed):
    """Lines whose parsed group is exactly their ground-truth group, over all lines."""
    truth_sizes = Counter(truth)
    groups = defaultdict(list)
    for line, key in enumerate(parsed):
        groups[key].append(line)
    correct = 0
    for lines in groups.values():
        truth_ids = {truth[line] for line in lines}
        if len(truth_ids) == 1 and truth_sizes[next(iter(truth_ids))] == len(lines):
            correct += len(lines)
    return correct / len(truth)


def miner(setting):
    config = TemplateMinerConfig()
    config.drain_depth = setting["depth"]
    config.drain_sim_th = setting["st"]
    config.drain_max_children = 100
    config.parametrize_numeric_tokens = True
    config.masking_instructions = [MaskingInstruction(rx, "*") for rx in setting["regex"]]
    config.profiling_enabled = False
    return TemplateMiner(config=config)


def run(contents, setting):
    template_miner = miner(setting)
    ids = [template_miner.add_log_message(line)["cluster_id"] for line in contents]
    final = {c.cluster_id: c.get_template() for c in template_miner.drain.clusters}
    return [final[i] for i in ids]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loghub", required=True)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with open(os.path.join(args.loghub, "settings.json")) as f:
        settings = json.load(f)
    for name, setting in settings.items():
        structured = os.path.join(args.loghub, name, f"{name}_2k.log_structured.csv")
        with open(structured, newline="") as f:
            rows = list(csv.DictReader(f))
        contents = [row["Content"] for row in rows]
        truth = [row["EventId"] for row in rows]
        templates = run(contents, setting)
        best = None
        for _ in range(args.repeat):
            start = time.perf_counter()
            run(contents, setting)
            elapsed = time.perf_counter() - start
            best = elapsed if best is None else min(best, elapsed)
        print(json.dumps({
            "dataset": name,
            "lines": len(contents),
            "grouping_accuracy": grouping_accuracy(truth, templates),
            "templates": len(set(templates)),
            "lines_per_second": len(contents) / best,
        }))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
