"""Turn one epoch's training checkpoint into a model directory (to pick an epoch other than the best-val_loss one).

    .venv/bin/python tools/checkpoint_to_model.py --model-dir runs/model --epoch 20 --output-dir runs/model_ep20

Copies ``config.json`` and ``history.jsonl`` and writes ``model.weights.h5`` from
``<model-dir>/checkpoints/ckpt-<epoch>`` (the training run keeps the last two).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", required=True, type=Path)
    p.add_argument("--epoch", required=True, type=int)
    p.add_argument("--output-dir", required=True, type=Path)
    args = p.parse_args(argv)

    import tensorflow as tf

    from vsep import model_io
    from vsep.model import SeparationModel

    ckpt = args.model_dir / "checkpoints" / f"ckpt-{args.epoch}"
    if not Path(f"{ckpt}.index").exists():
        print(f"checkpoint_to_model: no checkpoint {ckpt}", file=sys.stderr)
        return 2
    mcfg, tcfg, _ = model_io.read_config(str(args.model_dir))
    # the checkpoint holds what training tracks; a frozen GE2E speaker encoder is not among it, so every weight
    # starts from the best epoch's file and the checkpoint's overwrite what it has
    model = model_io.load(str(args.model_dir)) if mcfg.embed_dim else SeparationModel(mcfg, tcfg).build_for()
    status = tf.train.Checkpoint(model=model).restore(str(ckpt))
    status.assert_existing_objects_matched().expect_partial()  # every model weight; the optimizer is not needed
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name in (model_io.CONFIG, "history.jsonl"):
        shutil.copy(args.model_dir / name, args.output_dir / name)
    model_io.save_weights(model, str(args.output_dir))
    print(f"checkpoint_to_model: epoch {args.epoch} of {args.model_dir} -> {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
