"""Pack a prepared data set's training split small enough to travel to a GPU machine without TensorFlow.

    .venv/bin/python tools/gpu_pack.py --data runs/data_xs --output gpu_pack

Writes ``targets.ogg`` (every distinct target window of the train split, one after another,
``window`` samples each) and ``rests.ogg`` (each example's interference, other voice plus noise)
as Ogg Opus, and ``pack.json`` (counts, window, sample rate, bitrates). ``tools/gpu_train.py``
mixes them on the GPU. Opus keeps about 4 hours of 16 kHz audio in under 40 MB; its artefacts are
far below the separation errors the model makes (the round trip's SNR is printed).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def read_split(data: str, split: str):
    """``(targets [K, n], rests [M, n])`` of ``split``: distinct target windows, every example's interference."""
    from vsep import schema, shards

    targets, seen, rests = [], set(), []
    for f in sorted(glob.glob(f"{data}/{split}-*.tfrecord*")):
        with open(f, "rb") as fh:
            raw = fh.read()
        for rec in shards.read_records(raw, f.endswith(".gz")):
            ex = schema.decode(rec)
            t = np.asarray(ex["target"], np.float32)
            rest = np.asarray(ex["other"], np.float32) + np.asarray(ex["noise"], np.float32)
            if np.abs(t).max() > 1e-4:
                key = hashlib.sha1(t.tobytes()).hexdigest()
                if key not in seen:
                    seen.add(key)
                    targets.append(t)
            if np.abs(rest).max() > 1e-4:
                rests.append(rest)
    return np.stack(targets), np.stack(rests)


def write_opus(path: Path, rows: np.ndarray, rate: int, level: float) -> np.ndarray:
    """Rows ``[K, n]`` one after another as Ogg Opus; returns the decoded rows (for the round-trip check)."""
    import soundfile as sf

    peak = np.abs(rows).max()
    flat = (rows / max(peak, 1.0)).reshape(-1)
    sf.write(path, flat, rate, format="OGG", subtype="OPUS", compression_level=level)
    back, _ = sf.read(path, dtype="float32")
    back = np.pad(back, (0, max(0, flat.size - back.size)))[: flat.size]
    return back.reshape(rows.shape) * max(peak, 1.0)


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / (np.sum((ref - est) ** 2) + 1e-12)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="prepared data set (vsep prepare --output)")
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--split", default="train")
    p.add_argument("--target-level", type=float, default=0.9,
                   help="Opus compression level of targets (0: best, 1: smallest; 0.9 is about 32 kbit/s)")
    p.add_argument("--rest-level", type=float, default=0.95, help="Opus compression level of interference")
    p.add_argument("--max-rests", type=int, default=1400, help="keep at most this many interference windows")
    args = p.parse_args(argv)
    manifest = json.loads(Path(args.data, "manifest.json").read_text())
    rate = int(manifest["config"]["sample_rate"])
    targets, rests = read_split(args.data, args.split)
    if len(rests) > args.max_rests:
        rests = rests[np.sort(np.random.default_rng(0).choice(len(rests), args.max_rests, replace=False))]
    args.output.mkdir(parents=True, exist_ok=True)
    t_back = write_opus(args.output / "targets.ogg", targets, rate, args.target_level)
    r_back = write_opus(args.output / "rests.ogg", rests, rate, args.rest_level)
    info = {"data": args.data, "split": args.split, "sample_rate": rate, "window": int(targets.shape[1]),
            "targets": int(len(targets)), "rests": int(len(rests)),
            "target_level": args.target_level, "rest_level": args.rest_level,
            "round_trip_snr_db": {"targets": snr_db(targets, t_back), "rests": snr_db(rests, r_back)}}
    (args.output / "pack.json").write_text(json.dumps(info, indent=1) + "\n")
    sizes = {f.name: f.stat().st_size / 2**20 for f in args.output.iterdir()}
    print(json.dumps(info["round_trip_snr_db"]), {k: round(v, 1) for k, v in sizes.items()},
          f"{len(targets)} targets, {len(rests)} rests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
