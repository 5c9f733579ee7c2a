"""Benchmark: does the tf.data pipeline keep the model fed?

Measures, on a prepared data set, examples per second of the input pipeline
alone (parse, crop, remix, batch) and of training steps (patches per second),
and prints their ratio (pipeline / training; above 1 means the model is never
starved).

    .venv/bin/python benchmarks/bench_train.py --data runs/demo/data [--batches 30]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="prepared data set prefix")
    p.add_argument("--batches", type=int, default=30)
    args = p.parse_args()
    import keras

    from vsep.config import ModelConfig, TrainConfig
    from vsep.dataset import make_dataset
    from vsep.manifest import check_compatible, read_manifest
    from vsep.model import SeparationModel

    mcfg, tcfg = ModelConfig(), TrainConfig()
    files = check_compatible(read_manifest(args.data), mcfg, "train")
    ds = make_dataset(files, mcfg, tcfg, training=True)
    it = iter(ds)
    next(it)
    t0 = time.perf_counter()
    for _ in range(args.batches * 4):
        next(it)
    pipe = args.batches * 4 * tcfg.batch_size / (time.perf_counter() - t0)
    rows = {"pipeline_examples_per_s": round(pipe, 1)}
    for loss in ("l1_mag", "snr"):
        model = SeparationModel(mcfg, TrainConfig(loss=loss)).build_for()
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # trace
        t0 = time.perf_counter()
        model.fit(ds, steps_per_epoch=args.batches, epochs=1, verbose=0)
        rate = args.batches * tcfg.batch_size / (time.perf_counter() - t0)
        rows[f"train_{loss}_patches_per_s"] = round(rate, 1)
        rows[f"pipeline_over_train_{loss}"] = round(pipe / rate, 1)
    rows["patch_seconds"] = round(mcfg.patch_samples() / mcfg.sample_rate, 3)
    rows["params"] = model.count_params()
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
