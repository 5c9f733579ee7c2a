"""Does a model reject voices like its target's? SNR improvement against sound-alike interference.

    .venv/bin/python tools/impostor_check.py --model runs/model --data runs/data2 --split val

On one split of a prepared set, every example whose target and interference
are both present is remixed at a target-to-interference ratio drawn from
[-5, 5] dB (seeded) with, as interference:
- ``ordinary``: its own interference (other speakers, noise);
- ``target, unshifted``: the target of another example (two windows of the
  target speaker: ambiguous by construction, a floor);
- ``target, shifted X%``: that other target resampled (soxr,
  :func:`vsep.audio.shift_voice`) so that pitch and formants move by X% (a sound-alike voice: a proxy for
  impersonators, which the data set has none of).
Prints the median and mean target SNR improvement (dB) per condition. The
resampler is not the linear interpolation that training's
``--impostor-prob`` uses, so a model cannot pass by spotting its artefacts.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: the bundled model)")
    p.add_argument("--data", required=True, help="prepared data set prefix")
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--shifts", type=float, nargs="+", default=(-13.0, -6.5, 6.5, 15.0),
                   help="voice shifts in %% (positive: higher)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from vsep import audio, model_io
    from vsep.evaluate import examples_from_dataset

    model = model_io.load(args.model)
    cfg = model.cfg
    length = cfg.patch_samples()
    targets, rests = [], []
    for ex in examples_from_dataset(args.data, cfg.target, cfg.sample_rate, None, split=args.split):
        t, r = ex["refs"][0][:length], ex["refs"][1][:length]
        if len(t) == length and np.sum(t**2) > 1e-3 and np.sum(r**2) > 1e-3:
            targets.append(t)
            rests.append(r)
    if len(targets) < 2:
        print(f"impostor_check: fewer than 2 usable examples in the {args.split} split", file=sys.stderr)
        return 1
    target, rest = np.stack(targets), np.stack(rests)
    others = target[np.roll(np.arange(len(target)), 7)]
    rng = np.random.default_rng(args.seed)
    tir = rng.uniform(-5.0, 5.0, len(target))

    def snr(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
        return 10 * np.log10(np.sum(ref**2, -1) / (np.sum((ref - est) ** 2, -1) + 1e-12))

    def shifted(x: np.ndarray, percent: float) -> np.ndarray:
        y = audio.shift_voice(x, percent)
        return np.tile(y, -(-len(x) // len(y)))[: len(x)]  # a higher voice is shorter: loop it

    def improvement(interference: np.ndarray) -> np.ndarray:
        scale = np.sqrt(np.sum(target**2, -1) / np.sum(interference**2, -1) / 10 ** (tir / 10))
        mix = target + interference * scale[:, None]
        fix = np.minimum(1.0, 0.99 / np.abs(mix).max(-1, keepdims=True))
        mix, ref = (mix * fix).astype(np.float32), target * fix
        est = np.concatenate([model(tf.constant(mix[i : i + 8]), training=False).numpy()[:, 0]
                              for i in range(0, len(mix), 8)])
        return snr(ref, est) - snr(ref, mix)

    conditions = [("ordinary", rest), ("target, unshifted", others)]
    conditions += [(f"target, shifted {s:+g}%", np.stack([shifted(x, s) for x in others])) for s in args.shifts]
    print(f"impostor_check: {len(target)} examples of the {args.split} split; target SNRi in dB")
    for name, interference in conditions:
        gain = improvement(interference)
        print(f"  {name:24s} median {np.median(gain):6.2f}  mean {np.mean(gain):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
