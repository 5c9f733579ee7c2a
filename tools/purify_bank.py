"""Purify a speaker's training windows: drop those whose voice does not match the speaker.

Several target clips hold interviewers, crowds or music inside the "clean"
reference, which teaches a model to keep them. With a speaker-conditioned
model's encoder, every train window of ``--speaker`` is embedded and compared
(cosine) with the speaker's mean embedding; the ``--drop`` fraction that
agrees least is left out of a copy of the bank (val and test are linked
unchanged). The dropped windows and their scores are listed in
``purified.json`` so they can be listened to.

    .venv/bin/python tools/purify_bank.py --bank runs/bank --model runs/c2 --speaker trump --drop 0.15 \\
        --output runs/bank_pure
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bank", required=True)
    p.add_argument("--model", required=True, help="a speaker-conditioned model directory (its encoder scores)")
    p.add_argument("--speaker", required=True)
    p.add_argument("--drop", type=float, default=0.15, help="fraction of the speaker's train windows to drop")
    p.add_argument("--output", required=True)
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from vsep import bank as bank_mod
    from vsep import model_io

    src, out = Path(args.bank), Path(args.output)
    if not 0 <= args.drop < 1:
        raise SystemExit("purify_bank: --drop must lie in [0, 1)")
    b = bank_mod.load(str(src), "train")
    if args.speaker not in b.speakers:
        raise SystemExit(f"purify_bank: {args.speaker!r} has no train windows in {src}")
    model = model_io.load(args.model)
    own = b.of_speaker(b.speakers.index(args.speaker))
    emb = np.concatenate([np.asarray(model.embed(np.asarray(b.windows[own[i : i + 32]], np.float32)))
                          for i in range(0, len(own), 32)])
    mean = emb.mean(axis=0)
    score = emb @ (mean / np.linalg.norm(mean))
    cut = np.quantile(score, args.drop) if args.drop else -np.inf
    dropped = set(own[score < cut].tolist())
    out.mkdir(parents=True, exist_ok=True)
    keep = np.array([i for i in range(len(b.speaker)) if i not in dropped])
    with open(out / "train.f16", "wb") as f:
        for start in range(0, len(keep), 256):
            f.write(np.asarray(b.windows[keep[start : start + 256]], "<f2").tobytes())
    index = json.loads((src / "train.json").read_text())
    index["speaker"] = [index["speaker"][i] for i in keep]
    index["noise"] = [index["noise"][i] for i in keep]
    (out / "train.json").write_text(json.dumps(index))
    for split in ("val", "test"):
        for ext in ("f16", "json"):
            target = out / f"{split}.{ext}"
            if not target.exists():
                os.symlink(os.path.abspath(src / f"{split}.{ext}"), target)
    doc = json.loads((src / "bank.json").read_text())
    doc["splits"]["train"]["windows"] = len(keep)
    doc["purified"] = {"from": str(src), "model": args.model, "speaker": args.speaker, "drop": args.drop,
                       "dropped": len(dropped), "kept_of_speaker": len(own) - len(dropped)}
    (out / "bank.json").write_text(json.dumps(doc, indent=1))
    (out / "purified.json").write_text(json.dumps({
        "threshold": float(cut), "scores_percentiles_5_50_95": np.percentile(score, [5, 50, 95]).round(3).tolist(),
        "dropped": sorted((float(score[j]), int(w)) for j, w in enumerate(own) if w in dropped)}, indent=1))
    print(f"purify_bank: {args.speaker}: kept {len(own) - len(dropped)} of {len(own)} train windows "
          f"(cosine to the mean >= {cut:.3f}; median {np.median(score):.3f}); bank in {out}")
    shutil.copy(src / "bank.json", out / "bank.source.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
