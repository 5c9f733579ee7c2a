"""tf.data input pipeline: prepared TFRecord shards -> (mixture, sources) patches.

Streams the shards named by a data set's ``manifest.json`` (local or
``gs://``) with parallel interleave, shuffling, random crops to the model's
patch length, remixing of targets with other examples' interference at random
ratios, random gain, batching and prefetch.

Elements: ``mixture [batch, samples]`` and ``sources [batch, 2, samples]``
(target, rest = other + noise), ``samples = ModelConfig.patch_samples()``.

Reading ``gs://``: the shard URIs go straight to ``tf.data.TFRecordDataset``,
i.e. TensorFlow's built-in GCS filesystem, not :mod:`vsep.storage` (Beam and
google-cloud-storage): it streams and reads ahead inside the tf.data graph,
with no Python in the input pipeline and no local copy. On real GCS it finds
Application Default Credentials (or the VM's service account) like the other
clients. It has no endpoint setting, so tests point it at the GCS emulator
through a local proxy posing as ``*.googleapis.com``
(``tests/gcs_emulator.py``: ``GcsEmulator.tf_env()``, set before TF's first
``gs://`` access, hence in a subprocess). tensorflow-io's modular ``gs``
plugin is not used (``TF_USE_MODULAR_FILESYSTEM`` unset).
"""

from __future__ import annotations

import tensorflow as tf

from vsep import schema
from vsep.config import ModelConfig, TrainConfig

AUTOTUNE = tf.data.AUTOTUNE


def _to_pair(ex: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    """Parsed example -> (mixture [n], sources [2, n])."""
    rest = ex["other"] + ex["noise"]
    return ex["mixture"], tf.stack([ex["target"], rest], axis=0)


def _crop(mixture, sources, length: int, random: bool, seed: int | None):
    n = tf.shape(mixture)[0]
    if random:
        start = tf.random.uniform([], 0, n - length + 1, dtype=tf.int32, seed=seed)
    else:
        start = (n - length) // 2
    return mixture[start : start + length], sources[:, start : start + length]


def _db(x):
    return tf.pow(10.0, x / 20.0)


def remix(mixture, sources, tcfg: TrainConfig, seed: int | None = None):
    """Batch augmentation: new interference for some targets, random gain, no clipping.

    With probability ``remix_prob`` an example's interference is replaced by
    the next example's (rolled along the batch), scaled to a target-to-
    interference ratio drawn from ``tir_db``. Then the whole example is scaled
    by a gain drawn from ``gain_db`` and, if its peak exceeds 1, scaled down.
    ``mixture [B, n]``, ``sources [B, 2, n]`` -> the same shapes.
    """
    target, rest = sources[:, 0], sources[:, 1]
    batch = tf.shape(target)[0]
    other = tf.roll(rest, shift=1, axis=0)
    e_t = tf.reduce_sum(target**2, axis=-1)
    e_o = tf.reduce_sum(other**2, axis=-1)
    tir = tf.random.uniform([batch], tcfg.tir_db[0], tcfg.tir_db[1], seed=seed)
    scale = tf.sqrt(e_t / (e_o * tf.pow(10.0, tir / 10.0) + 1e-12))
    scale = tf.where((e_t > 1e-6) & (e_o > 1e-6), scale, tf.ones_like(scale))
    use = tf.random.uniform([batch], seed=None if seed is None else seed + 1) < tcfg.remix_prob
    rest = tf.where(use[:, None], other * scale[:, None], rest)
    gain = _db(tf.random.uniform([batch, 1], tcfg.gain_db[0], tcfg.gain_db[1], seed=None if seed is None else seed + 2))
    target, rest = target * gain, rest * gain
    mixture = target + rest
    peak = tf.reduce_max(tf.abs(mixture), axis=-1, keepdims=True)
    fix = tf.minimum(1.0, 0.99 / (peak + 1e-12))
    return mixture * fix, tf.stack([target * fix, rest * fix], axis=1)


def make_dataset(
    files: list[str],
    cfg: ModelConfig,
    tcfg: TrainConfig,
    training: bool,
    batch_size: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``(mixture [B, n], sources [B, 2, n])`` from TFRecord shards.

    Training: files and examples shuffled, random crops, remix and gain
    augmentation, repeats forever. Evaluation: fixed order, centre crops,
    one pass.
    """
    batch = batch_size or tcfg.batch_size
    length = cfg.patch_samples()
    compression = "GZIP" if files and files[0].endswith(".gz") else ""
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=tcfg.seed, reshuffle_each_iteration=True).repeat()
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression, buffer_size=8 << 20),
        cycle_length=max(1, min(4, len(files))),
        block_length=4,
        num_parallel_calls=AUTOTUNE,
        deterministic=not training,
    )
    if training:
        ds = ds.shuffle(tcfg.shuffle_buffer, seed=tcfg.seed, reshuffle_each_iteration=True)
    ds = ds.map(schema.parse, num_parallel_calls=AUTOTUNE).map(_to_pair, num_parallel_calls=AUTOTUNE)
    seed = tcfg.seed if training else None
    ds = ds.map(lambda m, s: _crop(m, s, length, training, seed), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch, drop_remainder=training)
    if training:
        ds = ds.map(lambda m, s: remix(m, s, tcfg), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
