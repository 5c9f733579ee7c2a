"""Benchmark: ``vsep separate`` as a user waits for it, on a 1-second, a 10-minute and a 1-hour input.

Builds recordings from real audio (44.1 kHz stereo WAV, so decode, downmix
and both resamplings are exercised) and runs ``vsep separate`` on each as a
subprocess, timing the whole process from start to both WAVs written (import,
model load, tracing included), with its CPU time and peak memory (the process
tree, sampled every 50 ms); next to it, the model's forward pass alone on the
10-minute input (chunked, at the model rate, after tracing).

    .venv/bin/python benchmarks/bench_separate.py [--model DIR] [--shifts 2] [--runtime auto|onnx|tf]

The runtime is vsep separate's (``auto``: the model's ONNX graph with
onnxruntime where it has a current one, else TensorFlow); the CPU model is
printed with the figures, since they depend on it.
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


def whole_process(path: Path, out: Path, extra: list[str]) -> dict:
    """``vsep separate`` as a user runs it: a subprocess, start to finish (wall, CPU, peak memory)."""
    from bench_prepare import tree_rss  # the same process-tree sampler as the prepare benchmark

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vsep", "separate", "--no-progress", *extra, "-o", str(out),
                             str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"bench_separate: vsep separate failed: {proc.stderr.read().decode()[-500:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(peak / 2**20)}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: bundled)")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--hour-minutes", type=float, default=60.0, help="length of the memory test input (0: skip)")
    p.add_argument("--shifts", type=int, default=SeparateConfig().shifts,
                   help="test-time shift averaging passes (default: vsep separate's)")
    p.add_argument("--precision", default=SeparateConfig().precision, choices=("auto", "float32", "mixed_bfloat16"))
    p.add_argument("--runtime", default=SeparateConfig().runtime, choices=("auto", "onnx", "tf"))
    p.add_argument("--mono", action="store_true", help="vsep separate --mono (one output channel)")
    p.add_argument("--enroll", action="append", default=[], metavar="NAME=CLIP",
                   help="vsep separate --enroll (a conditioned model; two or more: debate mode)")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vsep import inference, runtime

    extra = ["--shifts", str(args.shifts), "--precision", args.precision, "--runtime", args.runtime] + \
        (["--model", args.model] if args.model else []) + (["--mono"] if args.mono else []) + \
        [x for e in args.enroll for x in ("--enroll", e)]
    from vsep import enroll

    served = runtime.load(args.model, SeparateConfig(shifts=args.shifts, precision=args.precision,
                                                     runtime=args.runtime), enroll.read_specs(args.enroll, args.model))
    fn, cfg = served.mono, served.cfg
    print(json.dumps({"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)), "runtime": served.runtime,
                      "voices": list(served.names[:-1])}))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [("1 s", 1 / 60), (f"{args.minutes:g} min", args.minutes)]
        if args.hour_minutes:
            inputs.append((f"{args.hour_minutes:g} min", args.hour_minutes))
        for label, minutes in inputs:
            wav = Path(tmp) / f"in{len(rows)}.wav"
            dur = long_recording(wav, minutes)
            row = {"input": label, "seconds": round(dur, 1), **whole_process(wav, Path(tmp) / "out", extra)}
            row["x_realtime"] = round(dur / row["wall_s"], 1)
            if minutes == args.minutes:  # the model's forward pass alone, same length, at the model's rate
                fn(np.zeros(cfg.sample_rate * 5, np.float32))  # trace once (TensorFlow)
                x = np.random.default_rng(0).standard_normal(int(dur * cfg.sample_rate)).astype(np.float32)
                t0 = time.perf_counter()
                for _piece in inference.stream([x * 0.1], fn, cfg):
                    pass
                fwd = time.perf_counter() - t0
                row.update(forward_only_s=round(fwd, 2), forward_only_x_realtime=round(dur / fwd, 1))
            wav.unlink()
            rows.append(row)
            print(json.dumps({"shifts": args.shifts, "runtime": served.runtime, **row}), flush=True)
    print()
    print(f"| input (44.1 kHz stereo WAV) | whole process | x real time | CPU | peak RSS | forward pass alone "
          f"| shifts {args.shifts}, {served.runtime} |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        fwd = f"{r['forward_only_s']} s ({r['forward_only_x_realtime']}x)" if "forward_only_s" in r else ""
        print(f"| {r['input']} | {r['wall_s']} s | {r['x_realtime']}x | {r['cpu_s']} s | {r['peak_rss_mb']} MB "
              f"| {fwd} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
