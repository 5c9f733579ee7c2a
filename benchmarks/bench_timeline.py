"""Benchmark: timeline accuracy, frame-level precision and recall of "the target speaks".

On a ``vsep crosstest`` folder (clean references of every mixture), each
example is remixed as turns: the target is switched on and off in random
stretches of 1-3 s (20 ms ramps), and so is the other voice in the 2-speaker
conditions (``voices``, ``soundalike``), mostly in the target's pauses with
some overlap; noise (``noise``, ``room``) stays on throughout. The bundled
model (or ``--model``) separates each remix, :mod:`vsep.timeline` turns the
sources into segments, and the frames are compared with the activity of the
gated clean target. ``--thresholds`` sweeps the decision threshold
(choose it on the validation folder; report the test folder once).

    .venv/bin/python benchmarks/bench_timeline.py runs/xtest_val --thresholds 0.2 0.3 0.4 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from vsep.enroll_data import turns  # the same turns training uses (noqa: the benchmarks import it from here)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder")
    p.add_argument("--model")
    p.add_argument("--thresholds", type=float, nargs="+")
    p.add_argument("--unfloored", action="store_true",
                   help="measure the target's unfloored estimate (timeline.Tracker's floor), not the floored output")
    args = p.parse_args()
    import soundfile as sf

    from vsep import audio, runtime, timeline
    from vsep.config import SeparateConfig

    served = runtime.load(args.model, SeparateConfig())
    rate, target = served.cfg.sample_rate, served.cfg.target
    thresholds = args.thresholds or [timeline.THRESHOLD]
    scores = defaultdict(list)  # (condition, threshold) -> [(precision, recall)]
    for ex in sorted(d for d in Path(args.folder).iterdir() if (d / "meta.json").exists()):
        cond = json.loads((ex / "meta.json").read_text())["condition"]
        mix, r = sf.read(ex / "mixture.wav", dtype="float32")
        ref, _ = sf.read(ex / f"{target}.wav", dtype="float32")
        rest, _ = sf.read(ex / "rest.wav", dtype="float32")
        ref, rest = (audio.resample(audio.to_mono(x), r, rate) for x in (ref, rest))
        rng = np.random.default_rng(zlib.crc32(ex.name.encode()))  # the same turns every run
        gate = turns(len(ref), rate, rng)
        other = turns(len(ref), rate, rng, avoid=gate) if cond in ("voices", "soundalike") else 1.0
        ref = ref * gate
        mix = ref + rest * other
        tracker = timeline.Tracker(rate, SeparateConfig().target_floor if args.unfloored else 0.0)
        tracker.update(served.mono(mix))
        conf = timeline.confidence(*tracker.energies())
        truth = timeline.reference_activity(ref, rate, len(conf))
        for th in thresholds:
            s = timeline.frame_scores(timeline.active(conf, th), truth)
            scores[(cond, th)].append((s["precision"], s["recall"]))
            scores[("all", th)].append((s["precision"], s["recall"]))
    print("| condition | threshold | examples | frame precision (median) | frame recall (median) |")
    print("|---|---|---|---|---|")
    for (cond, th), v in sorted(scores.items()):
        pr = np.array(v)
        print(f"| {cond} | {th} | {len(v)} | {np.median(pr[:, 0]):.3f} | {np.median(pr[:, 1]):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
