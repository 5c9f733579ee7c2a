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
``<model_dir>/workers/``.
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


def strategy_from_flag(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute.Strategy`` named by ``--strategy`` (one of :data:`STRATEGIES`).

    ``multi_worker`` needs ``TF_CONFIG`` and raises ``ValueError`` without it
    (a one-machine "cluster" is almost always a missing variable, and the
    job would silently train on one machine).
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
        return tf.distribute.MirroredStrategy()
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO  # NCCL on GPUs, ring on CPUs
    )
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    broadcast_uint32_as_int64(strategy)
    return strategy


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
