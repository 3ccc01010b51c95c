#!/usr/bin/env python3
"""Prints the criterion results of benches/review.rs as a Markdown table
(median per iteration), from target/criterion/*/*/new/estimates.json."""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "target", "criterion")
stages = ["decode-kube", "decode", "review", "respond", "encode", "all"]


def fmt(ns):
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"


print("| group | " + " | ".join(stages) + " |")
print("|---|" + "---|" * len(stages))
for endpoint in ["validate", "mutate"]:
    for size in ["typical", "large"]:
        group = f"{endpoint}_{size}"
        cells = []
        for stage in stages:
            path = os.path.join(root, group, stage, "new", "estimates.json")
            try:
                with open(path) as f:
                    cells.append(fmt(json.load(f)["median"]["point_estimate"]))
            except OSError:
                cells.append("-")
        print(f"| {endpoint}/{size} | " + " | ".join(cells) + " |")
