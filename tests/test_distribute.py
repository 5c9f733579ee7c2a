"""``--strategy`` (vsep.distribute): TF_CONFIG parsing, and real synchronous training.

* Two processes on 127.0.0.1, each with its own ``TF_CONFIG`` (a two-worker
  cluster on free ports), run ``MultiWorkerMirroredStrategy`` (this file as a
  script: ``python test_distribute.py worker OUT``). Each trains a tiny
  :class:`vsep.model.SeparationModel` for a few steps on synthetic data and
  saves its weights, optimizer state and last loss: all must be identical in
  both workers (and the weights changed by training).
* ``MirroredStrategy`` over two logical CPUs of one process (the several-GPU
  case): both copies of every variable must be identical at the end.

Without the Keras fixes in vsep.distribute both fail (the multi-worker one
before training even starts).
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


def test_num_workers_and_input_sharding(monkeypatch):
    assert distribute.num_workers({}) == 1
    assert distribute.num_workers(_cluster("worker", 1)) == 2
    assert distribute.num_workers(_cluster("worker", 0, chief=True)) == 3
    import tensorflow as tf

    ds = tf.data.Dataset.range(8)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.shard_inputs(ds, 4) is ds  # one worker: untouched
    monkeypatch.setenv("TF_CONFIG", _cluster("worker", 1)["TF_CONFIG"])
    policy = tf.data.experimental.AutoShardPolicy

    def chosen(d: tf.data.Dataset) -> object:
        return d.options().experimental_distribute.auto_shard_policy

    assert chosen(distribute.shard_inputs(ds, 4)) == policy.FILE  # 4 train shards, 2 workers
    assert chosen(distribute.shard_inputs(ds, 1)) == policy.DATA  # 1 val shard: FILE would fail
    assert chosen(distribute.shard_inputs(ds)) == policy.DATA


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


def _train(strategy, out: str) -> None:
    """Build, compile and fit the tiny model under ``strategy``; save every replica's weights to ``out``."""
    import keras
    import tensorflow as tf

    from vsep.model import SeparationModel

    with strategy.scope():
        model = SeparationModel(TINY, TrainConfig(batch_size=GLOBAL_BATCH)).build_for()
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        model.optimizer.build(model.trainable_variables)

    def replicas(variables) -> list[list[np.ndarray]]:
        """Per variable, the value of each local replica's copy."""
        return [[c.numpy() for c in strategy.experimental_local_results(v.value)] for v in variables]

    initial = replicas(model.weights)
    mixture, sources = _synthetic()
    ds = tf.data.Dataset.from_tensor_slices((mixture, sources)).repeat().batch(GLOBAL_BATCH, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    history = model.fit(ds.with_options(options), epochs=1, steps_per_epoch=STEPS, verbose=0)
    arrays: dict[str, np.ndarray] = {}
    for prefix, values in (("initial", initial), ("final", replicas(model.weights)),
                           ("optimizer", replicas(model.optimizer.variables))):
        for i, copies in enumerate(values):
            for r, value in enumerate(copies):
                arrays[f"{prefix}_{i}_r{r}"] = value
    np.savez(
        out,
        replicas=strategy.num_replicas_in_sync,
        iterations=int(model.optimizer.iterations.numpy()),
        loss=history.history["loss"][-1],
        names=np.array([v.path for v in model.weights]),
        **arrays,
    )


def worker_main(out: str) -> None:
    """One worker of the two-worker cluster in ``TF_CONFIG``: the strategy first, then TensorFlow."""
    strategy = distribute.strategy_from_flag("multi_worker")
    import keras

    keras.utils.set_random_seed(distribute.task()[1])  # different seeds: the chief's initial values must win
    _train(strategy, out)


def mirrored_main(out: str) -> None:
    """``MirroredStrategy`` over two logical CPUs of one process (two GPUs' stand-in)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    distribute.fix_keras_for(strategy)  # what strategy_from_flag("mirrored") applies
    _train(strategy, out)


def _worker_env(cluster: list[str] | None = None, index: int = 0) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "TF_CONFIG"}  # gRPC reads proxies
    if cluster:
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}})
    env.update(
        no_proxy="127.0.0.1,localhost",
        CUDA_VISIBLE_DEVICES="-1",
        TF_CPP_MIN_LOG_LEVEL="2",
        TF_NUM_INTRAOP_THREADS="1",
        OMP_NUM_THREADS="1",
        PYTHONWARNINGS="ignore",
    )
    return env


def _run(commands: list[tuple[list[str], dict[str, str]]], logs: list[Path], timeout_s: float = 150) -> None:
    """Run the commands at once; all must exit 0 (their log tails in the message)."""
    start = time.monotonic()
    procs = []
    for (cmd, env), log_path in zip(commands, logs):
        with open(log_path, "wb") as log:
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    try:
        for p in procs:
            p.wait(timeout=max(1.0, timeout_s - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    tails = "\n".join(f"--- {log}:\n" + log.read_text(errors="replace")[-3000:] for log in logs)
    assert [p.returncode for p in procs] == [0] * len(procs), tails


def _replicas(result: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """A saved result split by replica: ``[{"final_3": value, ...}, ...]`` (keys without ``_r<k>``)."""
    count = 1 + max(int(k.rsplit("_r", 1)[1]) for k in result if "_r" in k)
    return [{k.rsplit("_r", 1)[0]: v for k, v in result.items() if k.endswith(f"_r{r}")} for r in range(count)]


def _assert_trained_in_sync(results: list[dict[str, np.ndarray]]) -> None:
    """All replicas of all results hold the same initial values, final weights and optimizer
    state; the strategy saw two replicas; training ran and changed the weights."""
    for r in results:
        assert int(r["replicas"]) == 2
        assert int(r["iterations"]) == STEPS
        assert np.isfinite(r["loss"])
    assert len({float(r["loss"]) for r in results}) == 1, "the workers' epoch logs differ (metrics not aggregated)"
    names = [str(n) for n in results[0]["names"]]
    replicas = [rep for r in results for rep in _replicas(r)]
    assert len(replicas) == 2
    assert replicas[0].keys() == replicas[1].keys()
    for key in sorted(replicas[0]):
        kind, index = key.split("_")
        label = f"{kind} {names[int(index)] if kind != 'optimizer' else index}"
        np.testing.assert_array_equal(replicas[0][key], replicas[1][key], err_msg=label)
    first = replicas[0]
    changed = [n for i, n in enumerate(names) if not np.array_equal(first[f"final_{i}"], first[f"initial_{i}"])]
    assert len(changed) == len(names), f"training changed only {changed} of {names}"


def test_multi_worker_mirrored_training_on_two_local_processes(tmp_path: Path):
    """Two processes, TF_CONFIG with two workers on 127.0.0.1: --strategy multi_worker trains in sync."""
    cluster = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    assert cluster[0] != cluster[1]
    outs = [tmp_path / f"worker{i}.npz" for i in range(2)]
    commands = [([sys.executable, __file__, "worker", str(outs[i])], _worker_env(cluster, i)) for i in range(2)]
    _run(commands, [tmp_path / f"worker{i}.log" for i in range(2)])
    _assert_trained_in_sync([dict(np.load(o)) for o in outs])


def test_mirrored_training_keeps_replicas_identical(tmp_path: Path):
    """MirroredStrategy over two logical CPUs (the one-machine, several-GPU case): the copies stay equal."""
    out = tmp_path / "mirrored.npz"
    _run([([sys.executable, __file__, "mirrored", str(out)], _worker_env())], [tmp_path / "mirrored.log"])
    _assert_trained_in_sync([dict(np.load(out))])


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("worker", "mirrored"):
        (worker_main if sys.argv[1] == "worker" else mirrored_main)(sys.argv[2])
    else:
        sys.exit("usage: test_distribute.py worker|mirrored OUT.npz")
