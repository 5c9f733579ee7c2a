"""Checks that ``tools/images.sh test`` runs inside a built image (it has vsep's environment).

    python image_check.py separate INPUT OUT_DIR   OUT_DIR/<stem>/{<target>,rest}.wav: input's length,
                                                   rate and channels, finite samples, not silent
    python image_check.py prepare DATA_DIR         a prepared data set: manifest, every shard intact,
                                                   training examples

Exit 1 with one line saying what is wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path


def check_separate(src: str, out: str) -> str:
    import numpy as np
    import soundfile as sf

    from vsep import audio, model_io

    target = model_io.read_config(str(model_io.BUNDLED))[0].target
    decoded, rate = audio.decode(Path(src).read_bytes(), src)  # [frames] or [frames, channels]
    frames, channels = decoded.shape[0], (decoded.shape[1] if decoded.ndim == 2 else 1)
    folder = Path(out) / Path(src).stem
    for name in (target, "rest"):
        y, r = sf.read(folder / f"{name}.wav", dtype="float32", always_2d=True)
        if r != rate or abs(y.shape[0] - frames) > 1 or y.shape[1] != channels:
            raise SystemExit(f"image_check: {name}.wav is {y.shape[0]} x {y.shape[1]} at {r} Hz, "
                             f"input {frames} x {channels} at {rate} Hz")
        if not np.all(np.isfinite(y)) or float(np.sqrt(np.mean(y**2))) < 1e-4:
            raise SystemExit(f"image_check: {name}.wav has non-finite samples or is silent")
    return f"separate ok: {target}.wav and rest.wav, {frames} frames x {channels} at {rate} Hz"


def check_prepare(data: str) -> str:
    from vsep.manifest import read_manifest, verify_shards

    m = read_manifest(data)
    verify_shards(m)
    counts = m["counts"]
    if not counts.get("train"):
        raise SystemExit(f"image_check: prepared set has no training examples: {counts}")
    return f"prepare ok: {counts}"


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "separate":
        print("images:", check_separate(argv[1], argv[2]))
    elif len(argv) == 2 and argv[0] == "prepare":
        print("images:", check_prepare(argv[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
