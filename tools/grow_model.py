"""Grow a trained U-Net by one level of depth, keeping what it computes (for fine-tuning a bigger model).

    .venv/bin/python tools/grow_model.py --model runs/model --output-dir runs/model_d6
    vsep train --init-from runs/model_d6 --depth 6 ...

Every layer of the old model is copied into the new one. The new bottom level
(``enc<D>``, ``dec<D>``) starts from its usual random weights, and the
deconvolution that used to read the old bottleneck reads it from the skip
half of its new input, with zero weights on the half that comes from the new
level. So the grown model's inference output equals the old model's (checked
here), and training can then make use of the new level (its gradient flows
through those zero weights from the first step). Only the dropout pattern
differs in training mode (the three lowest decoder levels have dropout).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path, help="trained model directory")
    p.add_argument("--output-dir", required=True, type=Path)
    args = p.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from vsep import model_io
    from vsep.model import SeparationModel

    old = model_io.load(str(args.model))
    mcfg, tcfg, doc = model_io.read_config(str(args.model))
    depth = mcfg.depth
    new_cfg = dataclasses.replace(mcfg, depth=depth + 1)
    new = SeparationModel(new_cfg, tcfg).build_for()
    old_layers = {layer.name: layer for layer in old.unet.layers}
    reads_bottleneck = f"dec{depth - 1}_deconv"
    for layer in new.unet.layers:
        source = old_layers.get(layer.name)
        if source is None or not layer.weights:
            continue
        weights = source.get_weights()
        if layer.name == reads_bottleneck:  # kernel [k, k, out, in]: in = [new level, old bottleneck]
            kernel, bias = weights
            grown = np.zeros(layer.get_weights()[0].shape, dtype=kernel.dtype)
            grown[..., -kernel.shape[-1]:] = kernel
            weights = [grown, bias]
        layer.set_weights(weights)
    x = tf.random.stateless_normal([2, mcfg.patch_samples()], seed=[1, 2]) * 0.1
    diff = float(tf.reduce_max(tf.abs(old(x) - new(x))))
    if diff > 1e-4:
        print(f"grow_model: the grown model's output differs from the old one's by {diff}", file=sys.stderr)
        return 1
    args.output_dir.mkdir(parents=True, exist_ok=True)
    grown_doc = {**doc, "model": {**doc["model"], "depth": depth + 1}, "grown_from": str(args.model)}
    (args.output_dir / model_io.CONFIG).write_text(json.dumps(grown_doc, indent=2, sort_keys=True))
    model_io.save_weights(new, str(args.output_dir))
    params = (old.unet.count_params(), new.unet.count_params())
    print(f"grow_model: depth {depth} -> {depth + 1}, {params[0]:,} -> {params[1]:,} parameters, "
          f"same output (max difference {diff:.1e}) -> {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
