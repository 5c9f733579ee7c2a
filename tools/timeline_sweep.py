"""Tune the timeline's smoothing and threshold on saved frame powers (``bench_enroll.py --dump-frames``).

    .venv/bin/python tools/timeline_sweep.py runs/bench/c5_val_frames.npz

The ground truth stays :func:`vsep.timeline.reference_activity`'s (the clean gated target, as the benchmark
scores it); only the detector's moving average and threshold vary. Prints median frame precision and
recall per setting, per enrollment length.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("frames")
    p.add_argument("--smooth", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4])
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5])
    p.add_argument("--quiet-db", type=float, nargs="+", default=[50.0],
                   help="frames this far below the target estimate's loudest are silence")
    args = p.parse_args()
    from vsep import timeline

    data = np.load(args.frames)
    keys = sorted({k.rsplit("_", 1)[0] for k in data.files})
    truths = {k: timeline.reference_from_power(data[f"{k}_clean"], len(data[f"{k}_target"])) for k in keys}
    print("| smoothing s | quiet dB | threshold | enrollment | precision | recall |")
    print("|---|---|---|---|---|---|")
    for smooth, quiet_db in [(sm, q) for sm in args.smooth for q in args.quiet_db]:
        for th in args.thresholds:
            scores = defaultdict(list)
            for k in keys:
                conf = timeline.confidence(data[f"{k}_target"], data[f"{k}_rest"], smooth_s=smooth, quiet_db=quiet_db)
                s = timeline.frame_scores(timeline.active(conf, th), truths[k])
                scores[k.split("_")[1]].append((s["precision"], s["recall"]))
            for seconds, pr in sorted(scores.items()):
                m = np.median(np.array(pr), axis=0)
                print(f"| {smooth:g} | {quiet_db:g} | {th:g} | {seconds} s | {m[0]:.3f} | {m[1]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
