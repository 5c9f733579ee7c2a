"""Benchmark: ``vsep separate`` speed (10-minute recording) and memory (1-hour recording).

Builds long recordings from real audio (44.1 kHz stereo WAV, so decode,
downmix and both resamplings are exercised), then prints:
- end-to-end real-time factor of ``vsep separate`` (decode, resample, model, write),
- real-time factor of the model's forward pass alone (chunked, at the model rate),
  and the ratio of the two,
- peak resident memory of ``vsep separate`` on a 1-hour input (a child process).

    .venv/bin/python benchmarks/bench_separate.py [--model DIR] [--shifts 1] [--minutes 10] [--hour-minutes 60]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from vsep.config import SeparateConfig

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent


def long_recording(path: Path, minutes: float, rate: int = 44100) -> float:
    """A stereo WAV of ``minutes`` made by looping real speech; returns its duration in s."""
    sys.path.insert(0, str(ROOT / "tests"))
    from vsep import audio
    from vsep.config import PrepareConfig

    from realdata import DATA

    speaker = DATA / "speakers" / PrepareConfig().target
    clips = sorted(speaker.glob("*"), key=lambda p: -p.stat().st_size)[:3]  # the longest recordings
    speech = np.concatenate([audio.load(c.read_bytes(), rate, str(c)) for c in clips])
    total = int(minutes * 60 * rate)
    with sf.SoundFile(path, "w", samplerate=rate, channels=2, subtype="PCM_16") as f:
        written = 0
        while written < total:
            n = min(len(speech), total - written)
            f.write(np.stack([speech[:n], 0.8 * speech[:n]], axis=1))
            written += n
    return total / rate


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: bundled)")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--hour-minutes", type=float, default=60.0, help="length of the memory test input (0: skip)")
    p.add_argument("--shifts", type=int, default=SeparateConfig().shifts,
                   help="test-time shift averaging passes (default: vsep separate's)")
    args = p.parse_args()
    import tensorflow as tf

    from vsep import inference, model_io
    from vsep.separate import separate_file

    model = model_io.load(args.model)
    fn = inference.build_separate_fn(model, shifts=args.shifts)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "ten_minutes.wav"
        dur = long_recording(wav, args.minutes)
        fn(tf.zeros([model.cfg.sample_rate * 5]))  # trace once
        t0 = time.perf_counter()
        separate_file(str(wav), Path(tmp) / "out", fn, model.cfg, show_progress=False)
        e2e = time.perf_counter() - t0
        x = np.random.default_rng(0).standard_normal(int(dur * model.cfg.sample_rate)).astype(np.float32) * 0.1
        t0 = time.perf_counter()
        for _piece in inference.stream([x], fn, model.cfg):
            pass
        fwd = time.perf_counter() - t0
        rows.update(
            shifts=args.shifts,
            input_minutes=args.minutes,
            end_to_end_s=round(e2e, 2),
            end_to_end_x_realtime=round(dur / e2e, 1),
            forward_only_s=round(fwd, 2),
            forward_only_x_realtime=round(dur / fwd, 1),
            end_to_end_over_forward=round(e2e / fwd, 2),
        )
        print(json.dumps(rows), flush=True)
        if not args.hour_minutes:
            return 0
        hour = Path(tmp) / "hour.wav"
        hdur = long_recording(hour, args.hour_minutes)
        cmd = [sys.executable, "-m", "vsep", "separate", "--no-progress", "--shifts", str(args.shifts),
               "-o", str(Path(tmp) / "hour_out"), str(hour)]
        if args.model:
            cmd[4:4] = ["--model", args.model]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        rows.update(hour_input_minutes=round(hdur / 60, 1), hour_input_mb=round(hour.stat().st_size / 1e6),
                    hour_wall_s=round(wall, 1), hour_x_realtime=round(hdur / wall, 1), hour_peak_rss_mb=round(peak_mb))
        print(json.dumps(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
