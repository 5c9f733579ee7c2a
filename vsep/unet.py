"""The mask network, backend-neutral (``keras.ops`` only): the same code builds the U-Net under
TensorFlow (training, ``vsep separate``, the SavedModel) and under JAX (``tools/gpu_train.py``, where a
GPU without TensorFlow trains it). :func:`build_unet` follows Jansson et al. 2017 (see :mod:`vsep.model`).

Shapes: input log-magnitude ``[batch, frames, bins, 1]``, output masks ``[batch, frames, bins, 2]``.
"""

from __future__ import annotations

import keras
from keras import ops

from vsep.config import ModelConfig


class PadToMultiple(keras.layers.Layer):
    """Zero-pad the frame axis of ``[batch, frames, bins, ch]`` to a multiple of ``multiple``."""

    def __init__(self, multiple: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.multiple = multiple

    def call(self, x):
        extra = (-ops.shape(x)[1]) % self.multiple
        return ops.pad(x, [[0, 0], [0, extra], [0, 0], [0, 0]])

    def get_config(self) -> dict:
        return {**super().get_config(), "multiple": self.multiple}


class CropLike(keras.layers.Layer):
    """Crop ``x`` to the frame count of ``reference`` (undoes :class:`PadToMultiple`)."""

    def call(self, x, reference):
        return x[:, : ops.shape(reference)[1]]


class TimeRNN(keras.layers.Layer):
    """Residual bidirectional GRU along time, one sequence per frequency row:
    ``[batch, frames, bins, ch]`` -> the same shape. Its output projection starts at zero, so a
    U-Net that gains the block computes exactly what it did before (fine-tuning starts there)."""

    def __init__(self, units: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape) -> None:
        ch = input_shape[-1]
        self.rnn = keras.layers.Bidirectional(keras.layers.GRU(self.units, return_sequences=True),
                                              dtype=self.dtype_policy, name="gru")
        self.rnn.build((None, None, ch))
        self.proj = keras.layers.Dense(ch, kernel_initializer="zeros", dtype=self.dtype_policy, name="proj")
        self.proj.build((None, None, 2 * self.units))

    def call(self, x):
        b, t, f, c = ops.shape(x)
        rows = ops.reshape(ops.transpose(x, [0, 2, 1, 3]), (b * f, t, c))  # [batch * bins, frames, ch]
        y = ops.reshape(self.proj(self.rnn(rows)), (b, f, t, c))
        return x + ops.transpose(y, [0, 2, 1, 3])

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


def build_unet(cfg: ModelConfig, precision: str = "float32") -> keras.Model:
    """Mask network: log-magnitude ``[batch, frames, bins, 1]`` -> masks ``[batch, frames, bins, 2]``.

    Any frame count works: frames are padded to a multiple of ``2**depth``
    and the masks cropped back. ``precision='mixed_bfloat16'`` computes the
    layers in bfloat16 (weights stay float32, so weight files are the same);
    the masks are float32 either way.
    """
    kw = {} if precision == "float32" else {"dtype": precision}
    if cfg.embed_dim:
        from vsep.speaker import FiLM
    if cfg.bins % 2**cfg.depth:
        raise ValueError(f"fft_length // 2 = {cfg.bins} must be divisible by 2**depth = {2**cfg.depth}")
    inp = keras.Input(shape=(None, cfg.bins, 1), name="log_magnitude")
    emb = keras.Input(shape=(cfg.embed_dim,), name="embedding") if cfg.embed_dim else None
    x = keras.layers.BatchNormalization(axis=2, name="input_norm")(inp)  # per-frequency scale, float32
    x = PadToMultiple(2**cfg.depth, name="pad_frames", **kw)(x)
    skips = []
    for i in range(cfg.depth):
        x = keras.layers.Conv2D(cfg.filters * 2**i, cfg.kernel_size, strides=2, padding="same", name=f"enc{i}_conv",
                                **kw)(x)
        x = keras.layers.BatchNormalization(name=f"enc{i}_bn", **kw)(x)
        x = keras.layers.LeakyReLU(negative_slope=0.2, name=f"enc{i}_act", **kw)(x)
        if emb is not None:  # speaker conditioning (vsep.speaker): identity at initialisation
            x = FiLM(name=f"enc{i}_film", **kw)([x, emb])
        skips.append(x)
    if cfg.time_rnn:
        x = TimeRNN(cfg.time_rnn, name="bottleneck_rnn", **kw)(x)
    for j, i in enumerate(reversed(range(cfg.depth))):
        last = i == 0
        filters = 2 if last else cfg.filters * 2 ** (i - 1)
        if j > 0:
            x = keras.layers.Concatenate(axis=-1, name=f"dec{i}_skip", **kw)([x, skips[i]])
        x = keras.layers.Conv2DTranspose(filters, cfg.kernel_size, strides=2, padding="same",
                                         name=f"dec{i}_deconv", **kw)(x)
        if last:
            break
        x = keras.layers.BatchNormalization(name=f"dec{i}_bn", **kw)(x)
        x = keras.layers.ReLU(name=f"dec{i}_act", **kw)(x)
        if emb is not None and cfg.film_decoder:
            x = FiLM(name=f"dec{i}_film", **kw)([x, emb])
        if cfg.time_rnn and j + 1 < cfg.time_rnn_levels:
            x = TimeRNN(cfg.time_rnn, name=f"dec{i}_rnn", **kw)(x)
        if j < 3 and cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"dec{i}_dropout", **kw)(x)
    masks = keras.layers.Activation("sigmoid", name="masks", dtype="float32")(x)
    masks = CropLike(name="crop_frames")(masks, inp)
    return keras.Model(inp if emb is None else [inp, emb], masks, name="unet")
