"""Speaker conditioning: an enrollment clip -> an embedding -> feature-wise modulation of the U-Net.

SpeakerBeam-style (Zmolikova et al. 2019) with FiLM (Perez et al. 2018): a
small encoder learned together with the separator turns the enrollment
clip's log-magnitude spectrogram (the model's own STFT) into a unit-length
embedding, averaged over the clip's frames, so any length of enrollment
works and a longer clip only averages more. Each U-Net encoder layer's
output is then scaled and shifted per channel by functions of the
embedding. The modulation starts as the identity (zero-initialised), so a
conditioned model warm-started from a one-target model begins as that model.

Shapes: enrollment log-magnitudes ``[batch, frames, bins]``; embeddings
``[batch, embed_dim]``; modulated features ``[batch, frames, bins, channels]``.
"""

from __future__ import annotations

import keras

from vsep.config import ModelConfig

ENCODER_CHANNELS = 128
ENCODER_DILATIONS = (1, 2, 4, 8)


class FiLM(keras.layers.Layer):
    """``[x [B, T, F, C], e [B, D]]`` -> ``x * (1 + gamma(e)) + beta(e)``, per channel."""

    def build(self, shapes):
        channels = shapes[0][-1]
        self.proj = keras.layers.Dense(2 * channels, kernel_initializer="zeros", dtype="float32", name="proj")
        self.proj.build(shapes[1])
        self.channels = channels

    def call(self, inputs):
        x, e = inputs
        gb = keras.ops.cast(self.proj(keras.ops.cast(e, "float32")), x.dtype)[:, None, None, :]
        return x * (1.0 + gb[..., : self.channels]) + gb[..., self.channels :]


class CosineClassifier(keras.layers.Layer):
    """Embeddings ``[B, D]`` (unit length) -> logits ``[B, classes]``: ``scale`` times the cosine to each
    class's weight vector. Training only (the speaker loss); inference never calls it."""

    def __init__(self, classes: int, scale: float = 10.0, **kwargs) -> None:
        super().__init__(dtype="float32", **kwargs)
        self.classes, self.scale = classes, scale

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], self.classes), initializer="glorot_uniform", name="w")

    def call(self, e):
        w = self.w / keras.ops.sqrt(keras.ops.sum(self.w**2, axis=0, keepdims=True) + 1e-12)
        return self.scale * keras.ops.matmul(keras.ops.cast(e, "float32"), w)


def build_encoder(cfg: ModelConfig, precision: str = "float32") -> keras.Model:
    """Enrollment log-magnitudes ``[B, T, bins]`` -> unit embeddings ``[B, embed_dim]`` (float32)."""
    kw = {} if precision == "float32" else {"dtype": precision}
    inp = keras.Input(shape=(None, cfg.bins), name="enroll_log_magnitude")
    x = keras.layers.BatchNormalization(axis=-1, name="spk_norm")(inp)
    for i, d in enumerate(ENCODER_DILATIONS):
        x = keras.layers.Conv1D(ENCODER_CHANNELS, 3, dilation_rate=d, padding="same", activation="relu",
                                name=f"spk_conv{i}", **kw)(x)
    x = keras.layers.GlobalAveragePooling1D(name="spk_pool", dtype="float32")(x)
    x = keras.layers.Dense(cfg.embed_dim, name="spk_embed", dtype="float32")(x)
    x = keras.layers.UnitNormalization(name="spk_unit", dtype="float32")(x)
    return keras.Model(inp, x, name="speaker_encoder")
