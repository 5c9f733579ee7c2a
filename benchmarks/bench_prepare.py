"""Benchmark: collect + prepare the whole real corpus with 1 and 2 local workers.

Prints, per worker count, the wall time of each job and the throughput as
seconds of audio processed per wall second (corpus duration / wall time).
Target: the whole ../shared/data corpus (about 90 minutes) prepared in under
2 minutes on a 2-core machine.

    .venv/bin/python benchmarks/bench_prepare.py [--data DIR] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from beam_jobs import collect, prepare
from vsep import lake
from vsep.config import PrepareConfig
from vsep.demo import collect_args, default_data


def beam_args(workers: int) -> list[str]:
    if workers == 1:
        return ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
    return [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]


def timed(fn, argv: list[str]) -> tuple[float, object]:
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = fn(argv)
    return time.perf_counter() - t0, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=default_data())
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    if args.data is None:
        print("bench_prepare: no corpus found (set VSEP_DATA or put shared/data beside the project)", file=sys.stderr)
        return 2
    rows = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            lake_dir, out = f"{tmp}/lake", f"{tmp}/data"
            t_collect, _ = timed(collect.run, collect_args(args.data, lake_dir) + beam_args(workers))
            entries = lake.read_index(lake_dir)
            audio_s = sum(e.duration_s for e in entries)
            target_s = sum(e.duration_s for e in entries if e.speaker == PrepareConfig().target)
            t_prep, manifest = timed(prepare.run, ["--lake", lake_dir, "--output", out] + beam_args(workers))
            size = sum(f.stat().st_size for f in Path(out).glob("*.tfrecord*"))
            n = sum(manifest["counts"].values())
            rows.append(
                {
                    "workers": workers,
                    "corpus_audio_s": round(audio_s, 1),
                    "target_audio_s": round(target_s, 1),
                    "collect_s": round(t_collect, 1),
                    "prepare_s": round(t_prep, 1),
                    "total_s": round(t_collect + t_prep, 1),
                    "collect_x_realtime": round(audio_s / t_collect, 1),
                    "prepare_x_realtime": round(audio_s / t_prep, 1),
                    "total_x_realtime": round(audio_s / (t_collect + t_prep), 1),
                    "examples": n,
                    "mixture_audio_s": round(n * 4.0, 1),
                    "shards_mb": round(size / 1e6, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print()
    print("| workers | corpus audio | collect | prepare | total | x real time (total) | examples | shards |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['corpus_audio_s'] / 60:.1f} min | {r['collect_s']} s | {r['prepare_s']} s "
            f"| {r['total_s']} s | {r['total_x_realtime']}x | {r['examples']} | {r['shards_mb']} MB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
