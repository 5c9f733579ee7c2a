"""Move U-Net weights between a model directory and the ``.npz`` files of ``tools/gpu_train.py``.

    .venv/bin/python tools/gpu_import.py --export vsep/models/default gpu_pack/init.npz
    .venv/bin/python tools/gpu_import.py --base vsep/models/default --weights unet_004000.npz --output-dir runs/g1

``--export`` writes the U-Net's ``get_weights()`` (float16 with ``--half``: half the size to carry, the
start of a fine-tuning run). Import builds the base model's architecture, sets the U-Net's weights
(shapes checked), and writes a model directory: the base's ``config.json`` with the GPU run's
settings recorded under ``"gpu_train"``, and ``model.weights.h5``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def export(model_dir: str, path: str, half: bool) -> int:
    from vsep import model_io

    model = model_io.load(model_dir)
    weights = model.unet.get_weights()
    dtype = np.float16 if half else np.float32
    np.savez(path, **{f"w{i:03d}": w.astype(dtype) for i, w in enumerate(weights)})
    print(f"gpu_import: {len(weights)} arrays of {model_dir}'s U-Net -> {path}")
    return 0


def import_weights(base: str, weights: str, output_dir: str, log: str | None) -> int:
    from vsep import model_io

    model, doc = model_io.load(base), model_io.read_config(base)[2]
    arrays = np.load(weights)
    new = [arrays[f"w{i:03d}"].astype(np.float32) for i in range(len(arrays.files))]
    old = model.unet.get_weights()
    if [w.shape for w in new] != [w.shape for w in old]:
        print(f"gpu_import: {weights} does not fit the U-Net of {base}", file=sys.stderr)
        return 2
    model.unet.set_weights(new)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    doc = dict(doc)
    doc["gpu_train"] = {"weights": str(weights), "base": base,
                        "run": json.loads(Path(log).read_text()) if log else None}
    model_io.write_config(output_dir, doc)
    model_io.save_weights(model, output_dir)
    print(f"gpu_import: {weights} -> {output_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", nargs=2, metavar=("MODEL_DIR", "NPZ"))
    p.add_argument("--half", action="store_true", help="with --export: float16 arrays")
    p.add_argument("--base", help="model directory whose architecture and config the weights fit")
    p.add_argument("--weights", help="an unet_<step>.npz of tools/gpu_train.py")
    p.add_argument("--log", help="the run's gpu_train_log.json, recorded in config.json")
    p.add_argument("--output-dir")
    args = p.parse_args(argv)
    if args.export:
        return export(*args.export, args.half)
    if not (args.base and args.weights and args.output_dir):
        p.error("give --export MODEL_DIR NPZ, or --base, --weights and --output-dir")
    return import_weights(args.base, args.weights, args.output_dir, args.log)


if __name__ == "__main__":
    sys.exit(main())
