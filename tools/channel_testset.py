"""Write a prepared set's test split through unseen recording channels, as a ``vsep evaluate --folder``.

    .venv/bin/python tools/channel_testset.py --data runs/data2 --output-dir runs/chan_test
    .venv/bin/vsep evaluate --folder runs/chan_test --output-dir runs/chan_eval --no-nmf

A robustness check for recordings unlike the training data: every test
example (mixture, target and rest alike, so the references stay exact) passes
through one random channel of :func:`vsep.dataset.channel_gain` (smooth EQ of
up to +-``--eq-db`` in its main component; a low-pass with probability
``--lowpass-prob``), drawn from ``--seed``. Examples whose target reference is
silent are left out (BSSEval cannot score them). Writes
``OUT/<example id>/mixture.wav``, ``<target>.wav`` and ``rest.wav`` (32-bit float).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="prepared data set prefix (its test split is used)")
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--eq-db", type=float, default=8.0)
    p.add_argument("--lowpass-prob", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args(argv)

    import numpy as np
    import soundfile as sf
    import tensorflow as tf

    from vsep.dataset import apply_gain, channel_gain
    from vsep.evaluate import SILENT, examples_from_dataset
    from vsep.manifest import read_manifest

    cfg = read_manifest(args.data)["config"]
    target, rate = cfg["target"], cfg["sample_rate"]
    tf.random.set_seed(args.seed)
    written = 0
    for ex in examples_from_dataset(args.data, target, rate, None):
        if np.sum(ex["refs"][0] ** 2) <= SILENT or np.sum(ex["refs"][1] ** 2) <= SILENT:
            continue
        rows = np.stack([ex["mixture"], *ex["refs"]]).astype(np.float32)
        gain = channel_gain(1, rows.shape[1] // 2 + 1, 1.0, args.eq_db, args.lowpass_prob)
        out = apply_gain(tf.constant(rows), tf.repeat(gain, 3, axis=0)).numpy()
        out *= min(1.0, 0.99 / (np.max(np.abs(out[0])) + 1e-12))
        folder = args.output_dir / re.sub(r"[^A-Za-z0-9_.-]", "_", ex["id"])
        folder.mkdir(parents=True, exist_ok=True)
        for name, wav in zip(("mixture", target, "rest"), out):
            sf.write(folder / f"{name}.wav", wav, rate, subtype="FLOAT")
        written += 1
    print(f"channel_testset: {written} examples in {args.output_dir}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
