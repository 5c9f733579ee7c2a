"""STFT and inverse STFT as Keras layers, built from one :class:`ModelConfig`.

Training, ``vsep separate`` and the exported SavedModel all use these two
layers, so the spectrogram a model was trained on is the one it is served on.

Spectra are real tensors ``[batch, frames, fft_length // 2 + 1, 2]`` holding
(real, imaginary) parts, so no complex tensor crosses a Keras layer boundary.
The waveform is padded by ``frame_length - frame_step`` zeros at both ends
before framing, so every input sample lies under a full set of overlapping
windows and :class:`InverseSTFT` reconstructs it exactly (up to float error).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from vsep.config import ModelConfig


def _pad(cfg: ModelConfig) -> int:
    return cfg.frame_length - cfg.frame_step


def num_frames(cfg: ModelConfig, num_samples: int) -> int:
    """Frames :class:`STFT` makes of ``num_samples`` samples (padding included).

    ``tf.signal.stft(..., pad_end=True)`` starts a frame at every hop of the
    padded signal, so the count is ``ceil(padded / frame_step)``.
    """
    padded = num_samples + 2 * _pad(cfg)
    return -(-padded // cfg.frame_step)


class _StftLayer(keras.layers.Layer):
    """What both directions share: the three STFT sizes, from a config or as numbers."""

    def __init__(self, frame_length: int, frame_step: int, fft_length: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.frame_length, self.frame_step, self.fft_length = frame_length, frame_step, fft_length

    @classmethod
    def from_config_dataclass(cls, cfg: ModelConfig, **kwargs):
        return cls(cfg.frame_length, cfg.frame_step, cfg.fft_length, **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "frame_length": self.frame_length,
                "frame_step": self.frame_step, "fft_length": self.fft_length}


class STFT(_StftLayer):
    """Waveform ``[batch, samples]`` -> spectrum ``[batch, frames, bins + 1, 2]``."""

    def call(self, waveform):
        pad = self.frame_length - self.frame_step
        x = tf.pad(tf.cast(waveform, tf.float32), [[0, 0], [pad, pad]])
        spec = tf.signal.stft(
            x,
            frame_length=self.frame_length,
            frame_step=self.frame_step,
            fft_length=self.fft_length,
            window_fn=tf.signal.hann_window,
            pad_end=True,
        )
        return tf.stack([tf.math.real(spec), tf.math.imag(spec)], axis=-1)


class InverseSTFT(_StftLayer):
    """Spectrum ``[batch, frames, bins + 1, 2]`` -> waveform ``[batch, length]``.

    ``length`` (a scalar tensor or int) is the length of the waveform the
    spectrum was made from; the padding of :class:`STFT` is cut off.
    """

    def call(self, spectrum, length):
        spec = tf.complex(spectrum[..., 0], spectrum[..., 1])
        x = tf.signal.inverse_stft(
            spec,
            frame_length=self.frame_length,
            frame_step=self.frame_step,
            fft_length=self.fft_length,
            window_fn=tf.signal.inverse_stft_window_fn(self.frame_step, forward_window_fn=tf.signal.hann_window),
        )
        pad = self.frame_length - self.frame_step
        return x[:, pad : pad + length]


def magnitude(spectrum):
    """``[..., 2]`` (real, imag) -> magnitude ``[...]``."""
    return tf.sqrt(tf.reduce_sum(tf.square(spectrum), axis=-1) + 1e-12)
