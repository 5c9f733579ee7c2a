"""``--strategy``: which ``tf.distribute`` strategy ``vsep train`` runs under.

* ``default``: one device, the one TensorFlow picks (the first GPU if any);
* ``mirrored``: every GPU of this machine, synchronous data parallelism
  (``MirroredStrategy``; the CPU when there is no GPU);
* ``multi_worker``: several machines with their GPUs
  (``MultiWorkerMirroredStrategy``); the cluster and this process's place in
  it come from ``TF_CONFIG``, which Vertex AI sets for a job with a chief pool
  and a worker pool.

The batch size stays the *global* one: Keras splits each batch over the
replicas. Create the strategy before any other TensorFlow call of the process
(multi-worker collectives are configured when the runtime starts), and build
and compile the model inside ``strategy.scope()``.

Every worker of a multi-worker job must take part in saving checkpoints (the
save is a collective), but only the chief may write the model directory:
:func:`task_model_dir` gives the other workers a directory of their own under
``<model_dir>/workers/``. :func:`shard_inputs` says how the workers split the
input (by file when there are enough shards). The strategies also need fixes
to Keras 3.3, applied by :func:`strategy_from_flag` (see :func:`fix_keras_for`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # TensorFlow is imported only when a strategy is made
    import tensorflow as tf

STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multi_worker")
HELP = (
    "tf.distribute strategy: 'default' (one device), 'mirrored' (all GPUs of this machine), "
    "'multi_worker' (several machines; cluster from TF_CONFIG)"
)


def tf_config(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The parsed ``TF_CONFIG`` (``{"cluster": ..., "task": ...}``), or None when unset or empty.

    Raises ``ValueError`` with one line when it is not JSON with a ``cluster``.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cluster"), dict) or not doc["cluster"]:
        raise ValueError("TF_CONFIG has no 'cluster' (expected {'cluster': {...}, 'task': {...}})")
    return doc


def task(environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    """This process's ``(task type, index)`` from ``TF_CONFIG``; ``("chief", 0)`` without one."""
    doc = tf_config(environ)
    if doc is None:
        return "chief", 0
    t = doc.get("task") or {}
    return str(t.get("type", "worker")), int(t.get("index", 0))


def is_chief(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process writes the model directory: the ``chief`` task, or
    worker 0 of a cluster that has no chief (TF's own convention)."""
    doc = tf_config(environ)
    kind, index = task(environ)
    if doc is None or kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in doc["cluster"]


def task_model_dir(model_dir: str, environ: Mapping[str, str] | None = None) -> str:
    """``model_dir`` for the chief; ``<model_dir>/workers/<type>-<index>`` for the other workers."""
    if is_chief(environ):
        return model_dir
    kind, index = task(environ)
    from vsep import storage

    return storage.join(model_dir, "workers", f"{kind}-{index}")


def num_workers(environ: Mapping[str, str] | None = None) -> int:
    """Machines training together: the ``chief`` and ``worker`` tasks of ``TF_CONFIG`` (1 without one)."""
    doc = tf_config(environ)
    if doc is None:
        return 1
    return max(1, sum(len(doc["cluster"].get(kind) or []) for kind in ("chief", "worker")))


def shard_inputs(dataset: tf.data.Dataset, num_files: int = 0) -> tf.data.Dataset:
    """How a multi-worker job splits ``dataset`` between its workers.

    By file (each worker reads its own shards) when there are at least as many
    files as workers, otherwise by element (every worker reads everything and
    keeps its share): TensorFlow's default would fail with "Could not apply
    FILE based sharding" on, e.g., a one-shard validation split. Give
    ``num_files=0`` for evaluation data, so that every worker sees the same
    number of batches. Unchanged with one worker.
    """
    workers = num_workers()
    if workers <= 1:
        return dataset
    import tensorflow as tf

    policy = tf.data.experimental.AutoShardPolicy
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy.FILE if num_files >= workers else policy.DATA
    return dataset.with_options(options)


def strategy_from_flag(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute.Strategy`` named by ``--strategy`` (one of :data:`STRATEGIES`).

    ``multi_worker`` needs ``TF_CONFIG`` and raises ``ValueError`` without it
    (a one-machine "cluster" is almost always a missing variable, and the
    job would silently train on one machine). ``mirrored`` and
    ``multi_worker`` also apply :func:`fix_keras_for`.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)})")
    if name == "multi_worker":
        doc = tf_config()  # check before TensorFlow starts
        if doc is None:
            raise ValueError("--strategy multi_worker needs TF_CONFIG (set by Vertex AI for multi-replica jobs)")
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        strategy: tf.distribute.Strategy = tf.distribute.MirroredStrategy()
    else:
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO  # NCCL on GPUs, ring on CPUs
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    fix_keras_for(strategy)
    return strategy


# ---------------------------------------------------------------- Keras 3 fixes
#
# Keras 3.3 (the pinned version) cannot train correctly under these strategies:
# gradients are not summed over the replicas, batch-norm statistics and
# metrics stay per replica, and a multi-worker fit fails outright (Dropout's
# uint32 seed state, scalar logs). Each fix below is small, idempotent, skipped
# or harmless where Keras has fixed the bug, and checked by
# tests/test_distribute.py (replicas and workers must end with identical weights).


def fix_keras_for(strategy: tf.distribute.Strategy) -> None:
    """Apply the fixes below that training under ``strategy`` needs (before building the model)."""
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        broadcast_uint32_as_int64(strategy)
        mean_scalar_logs_over_workers()
    sum_gradients_over_replicas()
    aggregate_non_trainable_variables()


def _keras_before(version: str) -> bool:
    import keras
    from packaging.version import Version

    return Version(keras.version()) < Version(version)


def sum_gradients_over_replicas() -> None:
    """Make Keras's TensorFlow optimizer all-reduce gradients over the replicas (Keras < 3.5).

    Keras 3.3 sums the replicas' gradients inside ``merge_call``, where there
    is no replica context, so it does not sum at all: every replica applies
    its own gradient and the copies of each variable drift apart without an
    error. keras-team/keras#19969 (Keras 3.5) moved the sum out of
    ``merge_call``; this is the same change. A no-op on Keras >= 3.5.
    """
    if not _keras_before("3.5"):
        return
    import tensorflow as tf
    from keras.src import backend
    from keras.src.backend.tensorflow.optimizer import TFOptimizer

    if getattr(TFOptimizer._backend_update_step, "_vsep_sum", False):
        return

    def _backend_update_step(self: Any, grads: list, trainable_variables: list, learning_rate: Any) -> None:
        variables = [v.value if isinstance(v, backend.Variable) else v for v in trainable_variables]
        grads_and_vars = self._all_reduce_sum_gradients(list(zip(grads, variables)))  # in the replica context

        def update(distribution: tf.distribute.Strategy, grads_and_vars: list, learning_rate: Any) -> None:
            for grad, var in grads_and_vars:
                distribution.extended.update(
                    var, lambda v, g, lr: self.update_step(g, v, lr), args=(grad, learning_rate), group=False
                )

        tf.__internal__.distribute.interim.maybe_merge_call(
            update, self._distribution_strategy, grads_and_vars, learning_rate
        )

    _backend_update_step._vsep_sum = True  # type: ignore[attr-defined]
    TFOptimizer._backend_update_step = _backend_update_step


def broadcast_uint32_as_int64(strategy: tf.distribute.Strategy) -> None:
    """Let ``strategy`` create ``uint32`` variables: broadcast their initial value as ``int64``.

    A multi-worker strategy sends every new variable's initial value from the
    chief to the other workers, and TensorFlow's collective broadcast has no
    ``uint32`` kernel. Keras before 3.5 keeps each ``SeedGenerator``'s state
    (every ``Dropout`` layer has one) in a ``uint32`` variable, so building the
    model would fail on the workers with "Value for attr 'T' of uint32 is not
    in the list of allowed values" (keras-team/keras#19928, fixed in 3.5).
    The value is cast to ``int64`` for the broadcast and back; other dtypes
    take TensorFlow's own path. A no-op for strategies without the hook.
    """
    import tensorflow as tf

    extended = strategy.extended
    original = getattr(extended, "_get_variable_creator_initial_value", None)
    if original is None or getattr(original, "_vsep_uint32", False):
        return

    def initial_value(replica_id: int, device: Any, primary_var: Any, **kwargs: Any) -> Any:
        dtype = kwargs.get("dtype")
        if replica_id != 0 or dtype is None or tf.as_dtype(dtype) != tf.uint32:
            return original(replica_id=replica_id, device=device, primary_var=primary_var, **kwargs)
        value = kwargs["initial_value"]

        def as_int64() -> tf.Tensor:
            v = value() if callable(value) else value
            v = getattr(v, "wrapped_value", v)  # a CheckpointInitialValue
            return tf.cast(tf.convert_to_tensor(v, dtype=tf.uint32), tf.int64)

        broadcast = original(
            replica_id=replica_id, device=device, primary_var=primary_var,
            **{**kwargs, "initial_value": as_int64, "dtype": tf.int64},
        )  # fmt: skip
        return lambda: tf.cast(broadcast() if callable(broadcast) else broadcast, tf.uint32)

    initial_value._vsep_uint32 = True  # type: ignore[attr-defined]
    extended._get_variable_creator_initial_value = initial_value


def mean_scalar_logs_over_workers() -> None:
    """Let Keras's ``fit`` average scalar logs (loss, metrics) over the workers of a multi-worker strategy.

    Keras 3 reduces what ``train_step`` returns with
    ``strategy.reduce("MEAN", value, axis=0)`` under a multi-worker strategy,
    which fails for scalars ("Invalid reduction dimension 0 for input with 0
    dimensions", tensorflow/tensorflow#72388), so ``fit`` cannot run at all.
    Scalars are averaged over the replicas instead (``axis=None``); anything
    else, and every other strategy, takes Keras's own path. Idempotent.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    original = getattr(trainer, "reduce_per_replica", None)
    is_multi_worker = getattr(trainer, "_collective_all_reduce_multi_worker", None)
    if original is None or is_multi_worker is None or getattr(original, "_vsep_scalars", False):
        return

    def reduce_per_replica(values: Any, strategy: tf.distribute.Strategy, reduction: str) -> Any:
        if reduction not in ("auto", "mean") or not is_multi_worker(strategy):
            return original(values, strategy, reduction)

        def mean(v: Any) -> Any:
            rank = strategy.experimental_local_results(v)[0].shape.rank
            return strategy.reduce("MEAN", v, axis=None if rank == 0 else 0)

        return tf.nest.map_structure(mean, values)

    reduce_per_replica._vsep_scalars = True  # type: ignore[attr-defined]
    trainer.reduce_per_replica = reduce_per_replica


def aggregate_non_trainable_variables() -> None:
    """Give batch-norm statistics and metrics the aggregation tf.keras gave them.

    Keras 3.3 creates every TensorFlow variable without an aggregation (later
    versions pass the variable's own on). Under a multi-replica strategy:

    * a ``BatchNormalization`` layer updates its moving mean and variance from
      its own replica's batch, and the copies drift apart;
    * a metric (``loss``, ``val_loss``...) only counts its own replica, so the
      epoch logs differ between workers, and so would every decision taken
      from them (best epoch, early stopping: a worker that stops while the
      others go on leaves them waiting for it).

    Non-trainable floating-point variables declared with ``aggregation="mean"``
    (moving statistics, optimizer slots) get ``tf.VariableAggregation.MEAN``;
    those declared ``"sum"`` (metric totals and counts) are kept per replica and
    summed when read (``ON_READ``), so ``result()`` is the global value. Seeds,
    counters and trainable weights keep TensorFlow's default. A no-op where
    Keras passes aggregations itself.
    """
    import inspect

    import tensorflow as tf
    from keras.src.backend.tensorflow import core

    original = core.Variable._initialize
    if getattr(original, "_vsep_aggregation", False) or "aggregation" in inspect.getsource(original):
        return

    def _initialize(self: Any, value: Any) -> None:
        if (
            self.trainable
            or self.aggregation not in ("mean", "sum")
            or not tf.as_dtype(self._dtype).is_floating
            or not tf.distribute.has_strategy()
        ):
            return original(self, value)
        if self.aggregation == "mean":
            sync, aggregation = tf.VariableSynchronization.AUTO, tf.VariableAggregation.MEAN
        else:
            sync, aggregation = tf.VariableSynchronization.ON_READ, tf.VariableAggregation.SUM
        self._value = tf.Variable(
            value, dtype=self._dtype, trainable=False, name=self.name, synchronization=sync, aggregation=aggregation
        )

    _initialize._vsep_aggregation = True  # type: ignore[attr-defined]
    core.Variable._initialize = _initialize
