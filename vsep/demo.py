"""``vsep demo``: the main job end to end on the embedded default data.

Data, in order of preference: ``--data``, ``$VSEP_DATA``, ``../shared/data``
next to the project, and otherwise the example manifest of public recordings
(``examples/manifest.csv``, fetched over https). Runs collect then prepare on
the local runner and prints where everything went.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_MANIFEST = ROOT / "examples" / "manifest.csv"


def default_data() -> Path | None:
    """The folder of real recordings to use, or ``None`` for the example manifest."""
    for candidate in (os.environ.get("VSEP_DATA"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "speakers").is_dir():
            return Path(candidate)
    return None


def collect_args(data: Path | None, lake: str) -> list[str]:
    if data is None:
        return ["--manifest", str(EXAMPLE_MANIFEST), "--lake", lake]
    args = ["--speakers", str(data / "speakers"), "--lake", lake]
    for kind in ("noise", "rir"):
        if (data / kind).is_dir():
            args += [f"--{kind}", str(data / kind)]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="vsep demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="runs/demo", help="where the lake, data set and outputs go")
    p.add_argument("--data", help="folder with speakers/, noise/, rir/ (default: $VSEP_DATA or ../shared/data)")
    p.add_argument("--target", default="trump", help="target speaker")
    p.add_argument("--workers", type=int, default=2, help="local Beam worker processes")
    args = p.parse_args(argv)

    from beam_jobs import collect, prepare

    data = Path(args.data) if args.data else default_data()
    work = Path(args.workdir)
    lake, dataset = str(work / "lake"), str(work / "data")
    beam = [f"--direct_num_workers={args.workers}", "--direct_running_mode=multi_processing"]
    print(f"demo  data  {data if data else EXAMPLE_MANIFEST} ")
    t0 = time.time()
    collect.run(collect_args(data, lake) + beam)
    t1 = time.time()
    manifest = prepare.run(["--lake", lake, "--output", dataset, "--target", args.target] + beam)
    t2 = time.time()
    print(f"demo  collect  {t1 - t0:.1f}s  prepare  {t2 - t1:.1f}s")
    print(f"demo  lake     {lake}")
    print(f"demo  dataset  {dataset}  {manifest['counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
