"""The ``vsep`` command: one entry point, one subcommand per stage.

Each subcommand's options are declared once, by the module that runs it; this
file only dispatches, and imports nothing heavy, so ``vsep --help`` is fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# name -> (module with main(argv) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "collect": ("beam_jobs.collect", "recordings (manifest, folders; local, gs://, http) -> data lake"),
    "prepare": ("beam_jobs.prepare", "data lake -> LUFS-normalised mixtures as sharded TFRecords"),
    "bank": ("vsep.bank", "data lake -> every speaker's speech as windows (training with any speaker as target)"),
    "train": ("vsep.train", "prepared TFRecords -> a separation model (resumable)"),
    "tune": ("tuner.search", "hyperparameter search (STFT, U-Net, loss, learning rate) with keras-tuner"),
    "separate": ("vsep.separate", "recordings -> <target>.wav and rest.wav per input"),
    "crosstest": ("vsep.crosstest", "held-out sources, voices, noises, rooms -> the cross-source evaluation set"),
    "evaluate": ("vsep.evaluate", "a model vs baselines: BSSEval v4 and SI-SDR report"),
    "export": ("vsep.export", "a model -> a SavedModel for serving (STFT inside the graph)"),
    "demo": ("vsep.demo", "the whole pipeline end to end on the embedded default data"),
}

USAGE = "usage: vsep [-h] [--version] COMMAND [options] [--verbose]\n"
VERBOSE_OPTION = ("collect", "prepare")  # commands whose own parser takes --verbose


def quiet_libraries() -> None:
    """Hide the libraries' start-up chatter (``--verbose`` keeps it).

    google-api-core's Python-version FutureWarnings, Beam's "apitools not
    found", TensorFlow's oneDNN and CPU-feature banners, and the same from Beam
    worker processes (they inherit the environment).
    """
    import logging
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    os.environ.setdefault("VSEP_QUIET", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*apitools.*")
    logging.getLogger().addFilter(_Quiet())
    for name in ("apache_beam.runners.portability.local_job_service", "apache_beam.options.pipeline_options",
                 "apache_beam.runners.worker.sdk_worker_main", "__main__"):
        logging.getLogger(name).setLevel(logging.ERROR)


# the libraries' known harmless start-up lines (also filtered out of Beam workers' stderr)
NOISE = ("apitools not found", "Logging handler created", "No semi_persistent_directory",
         "Discarding unparseable args", "FutureWarning", "warnings.warn(", "_python_version_support")


class _Quiet:
    """A logging filter for the root logger: drops the known harmless start-up warnings."""

    def filter(self, record) -> bool:
        msg = record.getMessage()
        return not any(p in msg for p in NOISE)


def _help() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [USAGE, "Pull one known speaker's voice out of real recordings.", "", "commands:"]
    lines += [f"  {n:<{width}}  {h}" for n, (_, h) in COMMANDS.items()]
    lines += ["", "Run 'vsep COMMAND --help' for the options of a command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_help())
        return 0 if args else 2
    if args[0] == "--version":
        from vsep import __version__

        print(f"vsep {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if "--verbose" not in rest:
        quiet_libraries()
    elif name not in VERBOSE_OPTION:
        rest = [a for a in rest if a != "--verbose"]
    if name not in COMMANDS:
        print(f"vsep: error: unknown command {name!r} (choose from {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
