"""Benchmark: ``vsep prepare`` over the whole real corpus at 1x, 2x and 5x its size.

Prints, per corpus scale, the wall time of ``vsep prepare`` run as a user runs
it (a subprocess, start to finish) and the peak resident memory of its whole
process tree (the driver and every Beam worker, sampled every 0.2 s), so that
memory growth with the corpus is visible. A scaled corpus lists every lake clip
``k`` times under new recording ids (same audio, new windows and mixtures):
the pipeline's work and data grow ``k``-fold.

    .venv/bin/python benchmarks/bench_prepare.py [--data DIR] [--scales 1 2 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from beam_jobs import collect
from vsep import lake
from vsep.config import PrepareConfig
from vsep.demo import collect_args, default_data

ROOT = Path(__file__).resolve().parent.parent


def beam_args(workers: int) -> list[str]:
    if workers == 1:
        return ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
    return [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(d))
            rss[int(d)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


def run_measured(cmd: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak tree RSS in bytes, exit code) of a subprocess."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    err = proc.stderr.read()
    if proc.returncode:
        print(err[-2000:], file=sys.stderr)
    return time.perf_counter() - t0, peak, proc.returncode


def scaled_lake(src: str, dst: str, k: int) -> None:
    """A lake index listing every clip of ``src`` ``k`` times (new ids; clips shared by absolute path)."""
    os.makedirs(dst, exist_ok=True)
    src = os.path.abspath(src)
    target = PrepareConfig().target
    lines = []
    for e in lake.read_index(src):
        for i in range(k):
            d = json.loads(e.to_json())
            d["clip"] = os.path.relpath(os.path.join(src, e.clip), dst)
            d["recording_id"] = e.recording_id if i == 0 else f"{e.recording_id}x{i}"
            if i and e.kind == "speech" and e.speaker != target:
                d["speaker"] = f"{e.speaker}x{i}"  # new interfering speakers, so speaker splits scale too
            lines.append(json.dumps(d))
    Path(dst, "index.jsonl").write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=default_data())
    p.add_argument("--lake", help="an existing lake (default: collect --data into a temporary one)")
    p.add_argument("--scales", type=int, nargs="+", default=[1, 2, 5])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the 1x output in runs/bench_prepare")
    args = p.parse_args()
    if args.data is None and args.lake is None:
        print("bench_prepare: no corpus found (set VSEP_DATA or put shared/data beside the project)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(dir=ROOT / "runs" if (ROOT / "runs").is_dir() else None) as tmp:
        lake_dir = args.lake
        if lake_dir is None:
            lake_dir = f"{tmp}/lake"
            t0 = time.perf_counter()
            collect.run(collect_args(args.data, lake_dir) + beam_args(args.workers))
            print(f"collect {time.perf_counter() - t0:.1f} s", flush=True)
        for k in args.scales:
            src = lake_dir
            if k > 1:
                src = f"{tmp}/lake{k}"
                scaled_lake(lake_dir, src, k)
            entries = lake.read_index(src)
            audio_s = sum(e.duration_s for e in entries)
            out = f"{tmp}/data{k}"
            cmd = [sys.executable, "-m", "vsep", "prepare", "--lake", src, "--output", out, *beam_args(args.workers)]
            wall, peak, rc = run_measured(cmd)
            if rc:
                print(f"bench_prepare: prepare at {k}x exited {rc}", file=sys.stderr)
                return 1
            manifest = json.loads(Path(out, "manifest.json").read_text())
            size = sum(f.stat().st_size for f in Path(out).glob("*.tfrecord*"))
            n = sum(manifest["counts"].values())
            rows.append({"scale": k, "corpus_h": round(audio_s / 3600, 2), "examples": n,
                         "prepare_s": round(wall, 1), "peak_rss_gb": round(peak / 2**30, 2),
                         "examples_per_s": round(n / wall, 1), "shards_gb": round(size / 2**30, 2)})
            print(json.dumps(rows[-1]), flush=True)
            if k == 1 and args.keep:
                os.makedirs(ROOT / "runs", exist_ok=True)
                os.replace(out, ROOT / "runs" / "bench_prepare")
            else:
                subprocess.run(["rm", "-rf", out], check=False)
    print()
    print(f"| corpus | audio | examples | prepare (whole process, {args.workers} workers) | peak RSS (all processes) "
          "| examples/s | shards |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scale']}x | {r['corpus_h']} h | {r['examples']} | {r['prepare_s']} s | {r['peak_rss_gb']} GB "
              f"| {r['examples_per_s']} | {r['shards_gb']} GB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
