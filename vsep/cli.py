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
    "train": ("vsep.train", "prepared TFRecords -> a separation model (resumable)"),
    "tune": ("tuner.search", "hyperparameter search (STFT, U-Net, loss, learning rate) with keras-tuner"),
    "separate": ("vsep.separate", "recordings -> <target>.wav and rest.wav per input"),
    "crosstest": ("vsep.crosstest", "held-out sources, voices, noises, rooms -> the cross-source evaluation set"),
    "evaluate": ("vsep.evaluate", "a model vs baselines: BSSEval v4 and SI-SDR report"),
    "export": ("vsep.export", "a model -> a SavedModel for serving (STFT inside the graph)"),
    "demo": ("vsep.demo", "the whole pipeline end to end on the embedded default data"),
}

USAGE = "usage: vsep [-h] [--version] COMMAND [options]\n"


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
    if name not in COMMANDS:
        print(f"vsep: error: unknown command {name!r} (choose from {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
