"""Speaker verification on a bank's held-out voices: how well a speaker encoder tells unheard voices apart.

    .venv/bin/python tools/speaker_eer.py --bank runs/bank --split val --model runs/c3 [--ge2e runs/ge2e.npz]

Takes up to ``--per-speaker`` 4 s windows of every voice of the split (fixed seed), embeds them with the
conditioned model's encoder (and, with ``--ge2e``, with the pretrained GE2E encoder of :mod:`vsep.ge2e`),
and prints for each the equal error rate over all pairs and the mean cosine of same-voice and
different-voice pairs (BENCHMARKS.md, "a pretrained speaker encoder").
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def eer(emb: np.ndarray, who: np.ndarray) -> tuple[float, float, float]:
    """``(equal error rate, mean same-voice cosine, mean different-voice cosine)`` of unit embeddings ``[N, D]``."""
    iu = np.triu_indices(len(who), 1)
    scores, same = (emb @ emb.T)[iu], (who[:, None] == who[None, :])[iu]
    if not same.any() or same.all():
        raise ValueError("need two or more windows of two or more voices")
    thresholds = np.quantile(scores, np.linspace(0, 1, 2001))
    far = np.array([(scores[~same] >= t).mean() for t in thresholds])
    frr = np.array([(scores[same] < t).mean() for t in thresholds])
    k = int(np.argmin(np.abs(far - frr)))
    return float((far[k] + frr[k]) / 2), float(scores[same].mean()), float(scores[~same].mean())


def _embed(fn, x: np.ndarray, batch: int = 32) -> np.ndarray:
    e = np.concatenate([np.asarray(fn(x[i : i + batch])) for i in range(0, len(x), batch)])
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bank", required=True)
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--model", help="a conditioned model directory (its encoder)")
    p.add_argument("--ge2e", help="GE2E weights (.npz of tools/ge2e_weights.py)")
    p.add_argument("--per-speaker", type=int, default=6)
    args = p.parse_args(argv)
    from vsep import bank as bank_mod

    b = bank_mod.load(args.bank, args.split)
    rng = np.random.default_rng(0)
    idx, who = [], []
    for i, name in enumerate(b.speakers):
        if name.startswith("noise:"):
            continue
        w = b.of_speaker(i)
        pick = rng.choice(w, min(len(w), args.per_speaker), replace=False)
        idx += list(pick)
        who += [i] * len(pick)
    x, who = np.asarray(b.windows[np.array(idx)], np.float32), np.array(who)
    print(f"{args.split}: {len(set(who))} voices, {len(x)} windows")
    encoders = []
    if args.model:
        from vsep import model_io

        encoders.append((args.model, model_io.load(args.model).embed))
    if args.ge2e:
        from vsep.ge2e import GE2E, load_npz

        layer = GE2E()
        layer.build((None, None))
        load_npz(layer, args.ge2e)
        encoders.append(("GE2E", layer))
    for name, fn in encoders:
        rate, same, diff = eer(_embed(fn, x), who)
        print(f"{name}: EER {rate:.1%}  cosine same {same:.3f}  different {diff:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
