"""``--strategy`` (vsep.distribute): TF_CONFIG parsing, and a real two-process
MultiWorkerMirroredStrategy run on 127.0.0.1 that trains the separation model.

The two workers are this file run as a script (``python test_distribute.py
worker OUT``), each with its own ``TF_CONFIG``; they train a tiny
:class:`vsep.model.SeparationModel` for a few steps on synthetic data and
save their weights, which must be the same in both and differ from the start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vsep import distribute
from vsep.config import ModelConfig, TrainConfig

from gcs_emulator import free_port

TINY = ModelConfig(depth=2, filters=2, frame_length=256, frame_step=64, fft_length=256, patch_frames=16)
STEPS = 3
GLOBAL_BATCH = 4


def _cluster(kind: str, index: int, chief: bool = False) -> dict[str, str]:
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    if chief:
        cluster["chief"] = ["127.0.0.1:3"]
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


# ---------------------------------------------------------------- TF_CONFIG, no TensorFlow


def test_task_and_chief_from_tf_config():
    assert distribute.task({}) == ("chief", 0) and distribute.is_chief({})
    assert distribute.task(_cluster("worker", 1)) == ("worker", 1)
    assert distribute.is_chief(_cluster("worker", 0))  # no chief task: worker 0 is the chief
    assert not distribute.is_chief(_cluster("worker", 1))
    assert distribute.is_chief(_cluster("chief", 0, chief=True))  # Vertex AI: workerpool0 is "chief"
    assert not distribute.is_chief(_cluster("worker", 0, chief=True))


def test_task_model_dir_keeps_workers_out_of_the_chiefs_directory():
    assert distribute.task_model_dir("gs://b/m", {}) == "gs://b/m"
    assert distribute.task_model_dir("gs://b/m", _cluster("chief", 0, chief=True)) == "gs://b/m"
    assert distribute.task_model_dir("gs://b/m", _cluster("worker", 0, chief=True)) == "gs://b/m/workers/worker-0"
    assert distribute.task_model_dir("runs/m", _cluster("worker", 1)) == os.path.join("runs/m", "workers", "worker-1")


def test_bad_flags_and_tf_config_fail_with_one_line(monkeypatch):
    with pytest.raises(ValueError, match="unknown strategy"):
        distribute.strategy_from_flag("tpu_pod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        distribute.strategy_from_flag("multi_worker")
    with pytest.raises(ValueError, match="not JSON"):
        distribute.tf_config({"TF_CONFIG": "{cluster"})
    with pytest.raises(ValueError, match="no 'cluster'"):
        distribute.tf_config({"TF_CONFIG": '{"task": {"type": "worker", "index": 0}}'})


def test_default_strategy_is_one_replica():
    assert distribute.strategy_from_flag("default").num_replicas_in_sync == 1


# ---------------------------------------------------------------- two real workers


def _synthetic(n_examples: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Mixtures and (target, rest) of harmonic tones in noise; the same in every worker."""
    rng = np.random.default_rng(7)
    n = TINY.patch_samples()
    t = np.arange(n) / TINY.sample_rate
    f0 = rng.uniform(100, 300, size=(n_examples, 1))
    target = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3)) * 0.1
    rest = rng.standard_normal((n_examples, n)) * 0.05
    sources = np.stack([target, rest], axis=1).astype(np.float32)
    return sources.sum(axis=1), sources


def worker_main(out: str) -> None:
    """One worker: the strategy first, then the model in its scope, a few steps, weights to ``out``."""
    strategy = distribute.strategy_from_flag("multi_worker")
    import keras
    import tensorflow as tf

    from vsep.model import SeparationModel

    keras.utils.set_random_seed(int(distribute.task()[1]))  # different seeds: the chief's initial values win
    with strategy.scope():
        model = SeparationModel(TINY, TrainConfig(batch_size=GLOBAL_BATCH)).build_for()
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        model.optimizer.build(model.trainable_variables)
    model.distribute_reduction_method = "first"
    initial = [v.numpy() for v in model.weights]
    mixture, sources = _synthetic()
    ds = tf.data.Dataset.from_tensor_slices((mixture, sources)).repeat().batch(GLOBAL_BATCH, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    history = model.fit(ds.with_options(options), epochs=1, steps_per_epoch=STEPS, verbose=0)
    final = [v.numpy() for v in model.weights]
    np.savez(
        out,
        replicas=strategy.num_replicas_in_sync,
        iterations=int(model.optimizer.iterations.numpy()),
        loss=history.history["loss"][-1],
        **{f"initial_{i}": w for i, w in enumerate(initial)},
        **{f"final_{i}": w for i, w in enumerate(final)},
    )


def _worker_env(cluster: list[str], index: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # gRPC honours proxy variables
    env.update(
        TF_CONFIG=json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}),
        no_proxy="127.0.0.1,localhost",
        CUDA_VISIBLE_DEVICES="-1",
        TF_CPP_MIN_LOG_LEVEL="2",
        TF_NUM_INTRAOP_THREADS="1",
        OMP_NUM_THREADS="1",
        PYTHONWARNINGS="ignore",
    )
    return env


def test_multi_worker_mirrored_training_on_two_local_processes(tmp_path: Path):
    cluster = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    assert cluster[0] != cluster[1]
    outs = [tmp_path / f"worker{i}.npz" for i in range(2)]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    start = time.monotonic()
    procs = []
    for i in range(2):
        with open(logs[i], "wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "worker", str(outs[i])],
                    env=_worker_env(cluster, i),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
    try:
        for p in procs:
            p.wait(timeout=max(1.0, 150 - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    tails = "\n".join(f"--- worker {i}:\n" + logs[i].read_text(errors="replace")[-3000:] for i in range(2))
    assert [p.returncode for p in procs] == [0, 0], tails

    results = [dict(np.load(o)) for o in outs]
    for r in results:
        assert int(r["replicas"]) == 2  # one replica per worker, synchronised
        assert int(r["iterations"]) == STEPS
        assert np.isfinite(r["loss"])
    names = sorted(k for k in results[0] if k.startswith("final_"))
    assert names and names == sorted(k for k in results[1] if k.startswith("final_"))
    for name in names:
        np.testing.assert_array_equal(results[0][name], results[1][name], err_msg=name)
        init = name.replace("final_", "initial_")
        np.testing.assert_array_equal(results[0][init], results[1][init], err_msg=init)  # chief's values broadcast
    changed = [n for n in names if not np.array_equal(results[0][n], results[0][n.replace("final_", "initial_")])]
    assert len(changed) >= len(names) // 2, f"training changed only {changed}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        worker_main(sys.argv[2])
    else:
        sys.exit("usage: test_distribute.py worker OUT.npz")
