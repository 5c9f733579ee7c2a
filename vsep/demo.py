"""``vsep demo``: the main job end to end on the embedded default data.

Data, in order of preference: ``--data``, ``$VSEP_DATA``, ``../shared/data``
next to the project, and otherwise the example manifest of public recordings
(``examples/manifest.csv``, fetched over https). Runs, on the local runner and
this machine: collect -> prepare -> train (short) -> evaluate -> separate a
debate-like crosstalk recording built from the test split, and prints where
everything went. Evaluation and separation use the bundled model when the
package has one (the short run only shows the training path works), else the
freshly trained model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from vsep.config import PrepareConfig

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vsep demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="runs/demo", help="where the lake, data set and outputs go")
    p.add_argument("--data", help="folder with speakers/, noise/, rir/ (default: $VSEP_DATA or ../shared/data)")
    p.add_argument("--target", default=PrepareConfig().target, help="target speaker")
    p.add_argument("--workers", type=int, default=2, help="local Beam worker processes")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the short training run")
    p.add_argument("--steps", type=int, default=60, help="steps per epoch of the short training run")
    p.add_argument("--eval-examples", type=int, default=40, help="test examples to evaluate")
    p.add_argument("--crosstalk-s", type=float, default=60.0, help="length of the crosstalk recording")
    p.add_argument("--split-fractions", type=float, nargs=3, metavar="X",
                   default=PrepareConfig().split_fractions,
                   help="train/val/test fractions of the recordings (a small corpus needs larger val and test)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vsep.storage import StorageError

    try:
        return run(args)
    except StageFailed as e:  # the stage has said why
        print(f"vsep demo: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, StorageError) as e:  # collect's and prepare's expected failures
        print(f"vsep demo: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """collect -> prepare -> train -> evaluate -> crosstalk -> separate -> evaluate; prints the outputs."""

    from beam_jobs import collect, prepare

    data = Path(args.data) if args.data else default_data()
    work = Path(args.workdir)
    lake, dataset, model_dir = str(work / "lake"), str(work / "data"), str(work / "model")
    beam = [f"--direct_num_workers={args.workers}", "--direct_running_mode=multi_processing"]
    print(f"demo  data  {data if data else EXAMPLE_MANIFEST}")
    times: dict[str, float] = {}
    t = time.time()
    collect.run(collect_args(data, lake) + beam)
    times["collect"], t = time.time() - t, time.time()
    manifest = prepare.run(["--lake", lake, "--output", dataset, "--target", args.target,
                            "--split-fractions", *map(str, args.split_fractions)] + beam)
    times["prepare"], t = time.time() - t, time.time()

    from vsep import crosstalk, evaluate, model_io, separate, train

    _check("train", train.main(["--data", dataset, "--model-dir", model_dir, "--target", args.target, "--quiet",
                                "--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps),
                                "--validation-steps", "8"]))
    times["train"], t = time.time() - t, time.time()
    bundled = model_io.BUNDLED if (model_io.BUNDLED / model_io.WEIGHTS).exists() else None
    if bundled is not None and model_io.read_config(str(bundled))[0].target != args.target:
        bundled = None
    use = str(bundled or model_dir)
    report = str(work / "eval")
    _check("evaluate", evaluate.main(["--model", use, "--data", dataset, "--output-dir", report,
                                      "--limit", str(args.eval_examples), "--no-progress"]))
    times["evaluate"], t = time.time() - t, time.time()
    rate = manifest["config"]["sample_rate"]
    mix, tgt, rest = crosstalk.build(lake, manifest["splits"], args.target, seconds=args.crosstalk_s, rate=rate)
    debate = crosstalk.write(work / "crosstalk" / "debate", args.target, mix, tgt, rest, rate)
    recording = work / "debate.wav"  # the mixture as a user's recording: separated into separated/debate/
    shutil.copyfile(debate, recording)
    _check("separate", separate.main(["--model", use, "--output-dir", str(work / "separated"), str(recording),
                                      "--no-progress"]))
    _check("evaluate", evaluate.main(["--model", use, "--folder", str(work / "crosstalk"),
                                      "--output-dir", str(work / "eval_crosstalk"), "--no-progress"]))
    times["separate"] = time.time() - t
    print("demo  " + "  ".join(f"{k} {v:.0f}s" for k, v in times.items()) + f"  total {sum(times.values()):.0f}s")
    print(f"demo  lake        {lake}")
    print(f"demo  dataset     {dataset}  {manifest['counts']}")
    print(f"demo  model       {model_dir} (trained here, short)   separation model: {use}")
    print(f"demo  report      {report}/report.html  {work / 'eval_crosstalk'}/report.html")
    print(f"demo  crosstalk   {recording}  (references: {debate.parent})")
    out = work / "separated" / recording.stem
    print(f"demo  separated   {out / (args.target + '.wav')}  {out / 'rest.wav'}")
    return 0


class StageFailed(RuntimeError):
    """A stage of the demo exited non-zero (it has printed why)."""


def _check(stage: str, rc: int) -> None:
    if rc:
        raise StageFailed(f"{stage} exited with status {rc}")


if __name__ == "__main__":
    sys.exit(main())
