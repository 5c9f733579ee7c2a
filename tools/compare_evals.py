"""Paired comparison of two ``vsep evaluate`` runs on the same examples (e.g. two recipes on the
cross-source validation set): is B better than A, or is the difference noise?

    .venv/bin/python tools/compare_evals.py runs/eval_val_r1 runs/eval_val_r5 [--metric SDRi]

Medians over 80 mixtures move by 0.3-0.5 dB between inference settings whose per-mixture mean moves
by 0.1 dB, so a choice made on medians alone can follow noise. This prints, overall and per condition,
both medians, the mean of the per-mixture differences B - A with a 95 % bootstrap interval, and on how
many mixtures B wins. Only examples present in both runs, with the metric finite in both, are paired.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def read_rows(folder: str, metric: str, method: str = "model", source: str = "target") -> dict[str, tuple[str, float]]:
    """``{example id: (condition, value)}`` of ``source``'s ``metric`` (``target`` or ``rest``) for ``method``
    in ``folder/examples``."""
    rows = {}
    for path in sorted(Path(folder, "examples").glob("*.json")):
        row = json.loads(path.read_text())
        # the target is the source that is not "rest"; absent where its reference is silent (vsep.evaluate.score)
        target = next((m for name, m in row["methods"].get(method, {}).items()
                       if (name == "rest") == (source == "rest")), None)
        if target is None:
            continue
        value = target.get(metric)
        if value is not None and np.isfinite(value):
            rows[row["id"]] = (row["kind"], float(value))
    if not rows:
        raise ValueError(f"{folder}: no examples with the {source}'s {metric} for method {method!r}")
    return rows


def paired(a: np.ndarray, b: np.ndarray, boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Paired statistics of ``b - a`` (both ``[n]``): medians, mean difference, its 95 % bootstrap
    interval (resampling the pairs), and the share of pairs where ``b > a``."""
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired() needs two non-empty arrays of the same length")
    d = b - a
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(boot, d.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"n": int(d.size), "median_a": float(np.median(a)), "median_b": float(np.median(b)),
            "mean_diff": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi),
            "wins": float(np.mean(d > 0))}


def compare(folder_a: str, folder_b: str, metric: str = "SDRi", source: str = "target") -> dict[str, dict[str, float]]:
    """``{group: paired(...)}`` for ``all`` and every condition both runs share."""
    ra, rb = read_rows(folder_a, metric, source=source), read_rows(folder_b, metric, source=source)
    common = sorted(set(ra) & set(rb))
    if not common:
        raise ValueError(f"{folder_a} and {folder_b} share no scored examples")
    groups: dict[str, list[str]] = defaultdict(list)
    for key in common:
        groups["all"].append(key)
        groups[ra[key][0]].append(key)
    return {g: paired(np.array([ra[k][1] for k in keys]), np.array([rb[k][1] for k in keys]))
            for g, keys in groups.items()}


def table(result: dict[str, dict[str, float]], metric: str) -> str:
    lines = [f"| group | n | median A | median B | mean {metric} B - A [95 % CI] | B wins |", "|---|---|---|---|---|---|"]
    for g, s in result.items():
        lines.append(f"| {g} | {s['n']} | {s['median_a']:.2f} | {s['median_b']:.2f} | "
                     f"{s['mean_diff']:+.2f} [{s['ci_low']:+.2f}, {s['ci_high']:+.2f}] | {s['wins']:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="vsep evaluate output folder of the reference (A)")
    p.add_argument("b", help="vsep evaluate output folder of the candidate (B)")
    p.add_argument("--metric", default="SDRi", help="target metric to compare (SDRi, SI-SDRi, PESQi, STOIi, ...)")
    p.add_argument("--source", default="target", choices=("target", "rest"), help="which output to compare")
    args = p.parse_args(argv)
    try:
        print(table(compare(args.a, args.b, args.metric, args.source), args.metric))
    except (ValueError, OSError) as e:
        print(f"compare_evals: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
