"""Plot the learning curve of one or more consecutive training runs (their ``history.jsonl``) as a PNG.

    .venv/bin/python tools/learning_curve.py runs/c1 runs/c2 runs/c3 -o docs/learning_curve_c3.png

Training loss and validation loss per epoch, and validation SNRi and SI-SDRi; each run continues the
epochs of the one before (a fine-tune starts where its predecessor's best epoch was taken).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="model directories, in training order")
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    for run in args.runs:
        rows = [json.loads(x) for x in (Path(run) / "history.jsonl").read_text().splitlines() if x.strip()]
        epochs = [offset + r["epoch"] for r in rows]
        name = Path(run).name
        a.plot(epochs, [r["loss"] for r in rows], "--", label=f"{name} train")
        a.plot(epochs, [r["val_loss"] for r in rows], "-o", ms=3, label=f"{name} val")
        b.plot(epochs, [r["val_snri"] for r in rows], "-o", ms=3, label=f"{name} val SNRi")
        b.plot(epochs, [r["val_si_sdri"] for r in rows], "--", label=f"{name} val SI-SDRi")
        best = min(rows, key=lambda r: r["val_loss"])["epoch"] if rows else 0
        offset += best  # the next run starts from this run's best epoch
    a.set(xlabel="epoch (400 steps of 8)", ylabel="loss (lower is better)", title="loss")
    b.set(xlabel="epoch", ylabel="dB", title="validation improvement")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
