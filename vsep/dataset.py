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


def _seed(seed: int | None, offset: int) -> int | None:
    return None if seed is None else seed + offset


def channel_gain(batch, bins, prob: float, max_db: float, lowpass_prob: float, seed: int | None = None):
    """Random recording channels: one real gain curve per row, ``[batch, bins]`` over 0..Nyquist.

    With probability ``prob`` a row's gain in dB is a sum of four cosines over
    log frequency (amplitudes up to ``max_db``, halving with each order: tilts,
    bumps and dips like microphones, rooms and loudspeakers), and with
    probability ``lowpass_prob`` on top a low-pass at a cutoff between 35% and
    95% of Nyquist (telephone, low-bitrate codecs); other rows are all ones.
    """
    u = tf.linspace(0.0, 1.0, bins)  # frequency / Nyquist
    logf = tf.math.log1p(63.0 * u) / tf.math.log(64.0)  # 0..1, roughly octaves above 125 Hz
    order = tf.range(1, 5, dtype=tf.float32)
    amp = tf.random.uniform([batch, 4], -max_db, max_db, seed=_seed(seed, 10)) / 2.0 ** (order - 1)
    phase = tf.random.uniform([batch, 4], 0.0, 2.0 * 3.14159265, seed=_seed(seed, 11))
    gain_db = tf.reduce_sum(amp[:, :, None] * tf.cos(3.14159265 * order[None, :, None] * logf + phase[:, :, None]), 1)
    cutoff = tf.random.uniform([batch, 1], 0.35, 0.95, seed=_seed(seed, 12))
    lowpass = tf.random.uniform([batch, 1], seed=_seed(seed, 13)) < lowpass_prob
    gain_db -= tf.where(lowpass, 60.0 * tf.sigmoid((u - cutoff) / 0.01), 0.0)
    use = tf.random.uniform([batch, 1], seed=_seed(seed, 14)) < prob
    return tf.where(use, tf.pow(10.0, gain_db / 20.0), 1.0)


def apply_gain(x, gain):
    """Zero-phase filtering of ``x [B, n]`` by gain curves ``[B, n // 2 + 1]`` in one FFT per row.

    The smooth curves of :func:`channel_gain` have impulse responses of a few
    ms, so the circular wrap of the FFT is negligible.
    """
    spec = tf.signal.rfft(x)
    return tf.signal.irfft(spec * tf.complex(gain, 0.0), fft_length=[tf.shape(x)[1]])


def channel_eq(x, prob: float, max_db: float, lowpass_prob: float, seed: int | None = None):
    """Each row of ``x [B, n]`` through its own random channel (:func:`channel_gain`) -> ``[B, n]``."""
    gain = channel_gain(tf.shape(x)[0], tf.shape(x)[1] // 2 + 1, prob, max_db, lowpass_prob, seed)
    return apply_gain(x, gain)


def shift_voice(x, factor):
    """Resample each row of ``x [B, n]`` by ``factor [B]`` and play it at the same rate -> ``[B, n]``.

    Pitch and formants move by ``factor`` together (a shorter or longer vocal
    tract: another voice, close to the original); ``factor > 1`` reads past
    the row's end and wraps around. Linear interpolation.
    """
    n = tf.shape(x)[1]
    pos = tf.cast(tf.range(n), tf.float32)[None, :] * factor[:, None]  # [B, n]
    pos = tf.math.floormod(pos, tf.cast(n, tf.float32))
    lo = tf.cast(tf.floor(pos), tf.int32)
    hi = tf.math.floormod(lo + 1, n)
    frac = pos - tf.floor(pos)
    return tf.gather(x, lo, batch_dims=1) * (1.0 - frac) + tf.gather(x, hi, batch_dims=1) * frac


def _shift_factor(batch, lo: float, hi: float, seed: int | None):
    """Resampling factors ``[batch]``: ``1 + s`` or ``1 / (1 + s)`` (equally likely), ``s`` uniform in [lo, hi]."""
    size = tf.random.uniform([batch], lo, hi, seed=seed)
    up = tf.random.uniform([batch], seed=_seed(seed, 1)) < 0.5
    return tf.where(up, 1.0 + size, 1.0 / (1.0 + size))


def remix(mixture, sources, tcfg: TrainConfig, seed: int | None = None):
    """Batch augmentation: new interference for some targets, random channels and gain, no clipping.

    With probability ``remix_prob`` an example's interference is replaced by
    the next example's (rolled along the batch; with probability
    ``other_shift_prob`` resampled by up to ``other_shift`` up or down, a new
    voice from each other speaker) or, with probability
    ``impostor_prob`` of those, by another example's target with its voice
    shifted (:func:`shift_voice`, by ``1 + s`` or ``1 / (1 + s)`` with ``s``
    in ``impostor_shift``), so that a voice like the target's counts as
    "rest"; it is scaled to a target-to-interference ratio drawn from
    ``tir_db``. Target and interference then each pass through their own
    random channel (:func:`channel_eq`, with probability ``eq_prob``), so that
    the model separates by voice, not by recording. Then the whole example is
    scaled by a gain drawn from ``gain_db`` and, if its peak exceeds 1, scaled
    down.
    ``mixture [B, n]``, ``sources [B, 2, n]`` -> the same shapes.
    """
    target, rest = sources[:, 0], sources[:, 1]
    batch = tf.shape(target)[0]
    other = tf.roll(rest, shift=1, axis=0)
    if tcfg.other_shift_prob > 0:  # new voices (and noises) from the ones the data set has
        shifted = shift_voice(other, _shift_factor(batch, 0.0, tcfg.other_shift, _seed(seed, 3)))
        pick = tf.random.uniform([batch], seed=_seed(seed, 8)) < tcfg.other_shift_prob
        other = tf.where(pick[:, None], shifted, other)
    if tcfg.impostor_prob > 0:  # another patch's target with a shifted voice, as interference
        impostor = shift_voice(tf.roll(target, shift=2, axis=0), _shift_factor(batch, *tcfg.impostor_shift,
                                                                              _seed(seed, 5)))
        pick = tf.random.uniform([batch], seed=_seed(seed, 7)) < tcfg.impostor_prob
        other = tf.where(pick[:, None], impostor, other)
    e_t = tf.reduce_sum(target**2, axis=-1)
    e_o = tf.reduce_sum(other**2, axis=-1)
    tir = tf.random.uniform([batch], tcfg.tir_db[0], tcfg.tir_db[1], seed=seed)
    scale = tf.sqrt(e_t / (e_o * tf.pow(10.0, tir / 10.0) + 1e-12))
    scale = tf.where((e_t > 1e-6) & (e_o > 1e-6), scale, tf.ones_like(scale))
    use = tf.random.uniform([batch], seed=_seed(seed, 1)) < tcfg.remix_prob
    rest = tf.where(use[:, None], other * scale[:, None], rest)
    if tcfg.eq_prob > 0:
        target = channel_eq(target, tcfg.eq_prob, tcfg.eq_db, tcfg.lowpass_prob, seed=_seed(seed, 20))
        rest = channel_eq(rest, tcfg.eq_prob, tcfg.eq_db, tcfg.lowpass_prob, seed=_seed(seed, 40))
    gain = _db(tf.random.uniform([batch, 1], tcfg.gain_db[0], tcfg.gain_db[1], seed=_seed(seed, 2)))
    target, rest = target * gain, rest * gain
    mixture = target + rest
    peak = tf.reduce_max(tf.abs(mixture), axis=-1, keepdims=True)
    fix = tf.minimum(1.0, 0.99 / (peak + 1e-12))
    return mixture * fix, tf.stack([target * fix, rest * fix], axis=1)


def _reader(compression: str, skipped: dict):
    """``file name -> dataset of its records``, leaving out what ``skipped`` names."""

    def read(f):
        return tf.data.TFRecordDataset(f, compression_type=compression, buffer_size=8 << 20)

    if not skipped:
        return read
    limits = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        list(skipped), [-1 if s["readable"] is None else s["readable"] for s in skipped.values()],
        tf.string, tf.int64), default_value=-1)
    keys = [f"{uri}#{i}" for uri, s in skipped.items() for i in s["bad"]] or ["#"]
    bad = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        keys, tf.ones(len(keys), tf.int64)), default_value=0)

    def read_good(f):
        ds = read(f).take(limits.lookup(f)).enumerate()  # never past a CRC failure
        ds = ds.filter(lambda i, r: bad.lookup(tf.strings.join([f, "#", tf.strings.as_string(i)])) == 0)
        return ds.map(lambda i, r: r)

    return read_good


def make_dataset(
    files: list[str],
    cfg: ModelConfig,
    tcfg: TrainConfig,
    training: bool,
    batch_size: int | None = None,
    skipped: dict | None = None,
) -> tf.data.Dataset:
    """Batches of ``(mixture [B, n], sources [B, 2, n])`` from TFRecord shards.

    Training: files and examples shuffled, random crops, remix and gain
    augmentation, repeats forever. Evaluation: fixed order, centre crops,
    one pass. ``skipped`` (``manifest["skipped"]``, ``--skip-corrupt``): per
    shard, record indices to leave out and how many records can be read.
    """
    batch = batch_size or tcfg.batch_size
    length = cfg.patch_samples()
    compression = "GZIP" if files and files[0].endswith(".gz") else ""
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=tcfg.seed, reshuffle_each_iteration=True).repeat()
    ds = ds.interleave(
        _reader(compression, skipped or {}),
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


def folder_patches(folder: str, cfg: ModelConfig) -> tuple:
    """A folder of scored examples (``vsep crosstest``'s: ``<name>/mixture.wav``, ``<target>.wav``,
    ``rest.wav``) as consecutive model patches: ``(mixture [N, n], sources [N, 2, n])`` NumPy arrays,
    ``n = cfg.patch_samples()``; an example's tail shorter than a patch is left out.

    ``vsep train --val-folder`` validates on these, so the best epoch is the one that scores best on
    recordings, voices and rooms held out whole (the cross-source validation set), not on mixtures
    whose interfering voices come from corpora training has.
    """
    import numpy as np

    from vsep.evaluate import examples_from_folder

    n = cfg.patch_samples()
    mixtures, sources = [], []
    for ex in examples_from_folder(folder, cfg.target, cfg.sample_rate):
        for start in range(0, len(ex["mixture"]) - n + 1, n):
            mixtures.append(ex["mixture"][start : start + n])
            sources.append(ex["refs"][:, start : start + n])
    if not mixtures:
        raise ValueError(f"{folder}: no example is as long as one model patch ({n} samples)")
    return np.stack(mixtures).astype(np.float32), np.stack(sources).astype(np.float32)


def folder_dataset(folder: str, cfg: ModelConfig, batch_size: int) -> tuple[tf.data.Dataset, int]:
    """:func:`folder_patches` as a cached dataset of ``(mixture [B, n], sources [B, 2, n])`` batches
    in a fixed order, and the number of batches."""
    mixtures, sources = folder_patches(folder, cfg)
    steps = -(-len(mixtures) // batch_size)
    return tf.data.Dataset.from_tensor_slices((mixtures, sources)).batch(batch_size).cache(), steps
