"""A pretrained speaker encoder for conditioned models: GE2E (Wan et al. 2018), as Resemblyzer ships it.

The learned encoder of :mod:`vsep.speaker` trains with the separator on the bank's 357 voices; on voices it
never heard it tells two speakers apart at an equal error rate of 18-25 % (4 s windows). GE2E was trained
for speaker verification on thousands of voices; on the same windows its equal error rate is 2-3 %
(BENCHMARKS.md). ``ModelConfig.speaker_encoder = "ge2e"`` conditions the U-Net on it instead, frozen.

:class:`GE2E` computes, inside the model and in float32: the clip's level raised to -30 dBFS (never
lowered), 40-band mel power spectra (25 ms Hann windows every 10 ms, centred, at 16 kHz, Slaney mel
filters as librosa makes them), partial utterances of 160 frames (1.6 s) every 77 frames (the tail that
does not fill one is dropped, unless the clip is shorter than one: then it is zero-padded), a 3-layer
LSTM (256 units) over each partial, its last state through a 256 x 256 linear layer and a ReLU, unit
length; the clip's embedding is the unit-length mean of its partials'. Weights: ``tools/ge2e_weights.py``
converts Resemblyzer's checkpoint to an ``.npz`` that :func:`load_npz` (``vsep train --speaker-weights``)
puts into the layer; from then on they are saved with the model.

Shapes: waveforms ``[batch, samples]`` at 16 kHz -> embeddings ``[batch, 256]``.
"""

from __future__ import annotations

import keras
import numpy as np

RATE = 16000
N_FFT, HOP, MELS = 400, 160, 40
PARTIAL, PARTIAL_STEP = 160, 77  # frames; 77 = round(16000 / 1.3 / 160), Resemblyzer's 1.3 partials a second
UNITS = EMBED_DIM = 256
TARGET_DBFS = -30.0


def mel_matrix() -> np.ndarray:
    """Slaney mel filters ``[N_FFT // 2 + 1, MELS]`` (librosa's ``filters.mel(sr=16000, n_fft=400, n_mels=40)``)."""
    import librosa

    return librosa.filters.mel(sr=RATE, n_fft=N_FFT, n_mels=MELS).T.astype(np.float32)


class GE2E(keras.layers.Layer):
    """Waveforms ``[B, n]`` -> unit speaker embeddings ``[B, 256]`` (frozen, float32)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(dtype="float32", trainable=False, **kwargs)
        # each sub-layer frozen too: a model's trainable_variables gathers them layer by layer, so a frozen
        # parent alone left them to the optimizer (C4 fine-tuned them by mistake)
        self.lstms = [keras.layers.LSTM(UNITS, return_sequences=i < 2, dtype="float32", name=f"ge2e_lstm{i}",
                                        trainable=False) for i in range(3)]
        self.linear = keras.layers.Dense(EMBED_DIM, activation="relu", dtype="float32", name="ge2e_linear",
                                         trainable=False)
        self.mel = mel_matrix()

    def build(self, shape) -> None:
        x = (None, PARTIAL, MELS)
        for lstm in self.lstms:
            lstm.build(x)
            x = (None, PARTIAL, UNITS)
        self.linear.build((None, UNITS))

    def partials(self, waveform):
        """``[B, n]`` -> mel power partials ``[B, P, 160, 40]``."""
        import tensorflow as tf

        x = tf.cast(waveform, tf.float32)
        rms = tf.sqrt(tf.reduce_mean(x**2, axis=-1, keepdims=True)) + 1e-9
        gain = tf.clip_by_value(10.0 ** (TARGET_DBFS / 20.0) / rms, 1.0, 1e5)  # raise only, as Resemblyzer
        x = tf.pad(x * gain, [[0, 0], [N_FFT // 2, N_FFT // 2]])  # librosa's centred frames
        spec = tf.signal.stft(x, N_FFT, HOP, fft_length=N_FFT, window_fn=tf.signal.hann_window, pad_end=False)
        power = tf.math.real(spec) ** 2 + tf.math.imag(spec) ** 2  # [B, T, 201]
        mels = tf.matmul(power, self.mel)  # [B, T, 40]
        short = tf.maximum(0, PARTIAL - tf.shape(mels)[1])
        mels = tf.pad(mels, [[0, 0], [0, short], [0, 0]])
        return tf.signal.frame(mels, PARTIAL, PARTIAL_STEP, axis=1)  # [B, P, 160, 40]

    def call(self, waveform):
        import tensorflow as tf

        parts = self.partials(waveform)
        b, p = tf.shape(parts)[0], tf.shape(parts)[1]
        h = tf.reshape(parts, [b * p, PARTIAL, MELS])
        for lstm in self.lstms:
            h = lstm(h)
        e = self.linear(h)
        e = e / (tf.norm(e, axis=-1, keepdims=True) + 1e-9)
        e = tf.reduce_mean(tf.reshape(e, [b, p, EMBED_DIM]), axis=1)
        return e / (tf.norm(e, axis=-1, keepdims=True) + 1e-9)


def load_npz(layer: GE2E, path: str) -> None:
    """Put the arrays of ``tools/ge2e_weights.py`` (PyTorch layout: gates i, f, g, o, two biases) into ``layer``."""
    w = np.load(path)
    for i, lstm in enumerate(layer.lstms):
        kernel, recurrent = w[f"lstm/weight_ih_l{i}"].T, w[f"lstm/weight_hh_l{i}"].T  # Keras gates: i, f, c, o
        lstm.set_weights([kernel, recurrent, w[f"lstm/bias_ih_l{i}"] + w[f"lstm/bias_hh_l{i}"]])
    layer.linear.set_weights([w["linear/weight"].T, w["linear/bias"]])
