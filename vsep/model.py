"""The separation model: STFT -> U-Net soft masks -> inverse STFT.

:func:`build_unet` is the mask network after Jansson et al. 2017 ("Singing
voice separation with deep U-Net convolutional networks"): strided 5x5
convolutions with batch norm and leaky ReLU in the encoder; transposed
convolutions, batch norm, ReLU, dropout (first three layers) and skip
connections in the decoder. It predicts two sigmoid masks, target and rest
(multi-task). :class:`SeparationModel` wraps it between the STFT layers: waveform in,
waveforms out, with the training and validation steps and their losses.

Shapes: waveforms ``[batch, samples]``; spectra ``[batch, frames, bins + 1, 2]``;
U-Net input ``[batch, frames, bins, 1]`` and output ``[batch, frames, bins, 2]``
with ``bins = fft_length // 2``; separated waveforms ``[batch, 2, samples]``
(index 0 the target, 1 the rest).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from vsep.config import ModelConfig, TrainConfig
from vsep.speaker import CosineClassifier, build_encoder
from vsep.stft import STFT, InverseSTFT, magnitude
from vsep.unet import CropLike, PadToMultiple, build_unet  # noqa: F401 (re-exported)

SOURCES = ("target", "rest")
EPS = 1e-8
LEVEL_FLOOR = 1e-5
SISDR_CAP_DB = 30.0  # the SI-SDR loss saturates here (see si_sdr)


def normalise_level(mag, mode: str):
    """``[B, T, F]`` magnitudes divided by each example's mean magnitude (``mode='mean'``).

    Makes the U-Net's input independent of the recording's level (a gain
    multiplies every magnitude alike), so a loud broadcast and a quiet phone
    recording look the same to it. Digital silence stays near zero (the
    floor ``LEVEL_FLOOR`` keeps it from being blown up to full scale).
    """
    if mode == "none":
        return mag
    return mag / (tf.reduce_mean(mag, axis=[1, 2], keepdims=True) + LEVEL_FLOOR)


def silence_penalty(estimate, mixture):
    """Energy of ``estimate`` relative to ``mixture`` in dB/10, floored at -3 (i.e. -30 dB).

    ``[..., samples]`` -> ``[...]``. The SI-SDR loss's term for a source that is
    silent in the reference (target-only or other-only patches): the model is
    rewarded for suppressing it by up to 30 dB.
    """
    ratio = (tf.reduce_sum(estimate**2, axis=-1) + EPS) / (tf.reduce_sum(mixture**2, axis=-1) + EPS)
    return _db(ratio + 1e-3) / 10.0  # 1e-3: the -30 dB floor


def deleted_share(reference_mag, estimate_mag):
    """Share of the reference's STFT magnitude missing from the estimate: ``[B, T, F]`` x2 -> ``[B]`` in [0, 1].

    Only deficits count (``relu(reference - estimate)``), so leaking interference costs nothing here:
    the ``keep_weight`` term of the loss, which makes deleting target speech dearer than leaving noise.
    """
    lost = tf.reduce_sum(tf.nn.relu(reference_mag - estimate_mag), axis=[1, 2])
    return lost / (tf.reduce_sum(reference_mag, axis=[1, 2]) + EPS)


def _db(x):
    return 10.0 * tf.math.log(x) / tf.math.log(10.0)


def _capped_ratio_db(signal, error, max_db: float | None):
    """``10 log10(signal / error)`` with ``10**(-max_db/10) * signal`` added to ``error`` (no cap if None)."""
    floor = 0.0 if max_db is None else 10.0 ** (-max_db / 10.0) * signal
    return _db((signal + EPS) / (error + floor + EPS))


def si_sdr(reference, estimate, max_db: float | None = None):
    """Scale-invariant SDR in dB over the last axis: ``[..., samples]`` -> ``[...]``.

    ``max_db`` softly caps it (the thresholded SNR of Wisdom et al. 2020,
    MixIT): the error energy gets ``10**(-max_db/10)`` of the target energy
    added. Training needs the cap: without it a nearly perfect estimate (a
    target-only patch, where a constant mask is already perfect) has a
    gradient that grows without bound as its error vanishes, swamps every
    other patch in the batch and drives the masks to a constant.
    """
    reference = reference - tf.reduce_mean(reference, axis=-1, keepdims=True)
    estimate = estimate - tf.reduce_mean(estimate, axis=-1, keepdims=True)
    dot = tf.reduce_sum(reference * estimate, axis=-1, keepdims=True)
    energy = tf.reduce_sum(reference**2, axis=-1, keepdims=True) + EPS
    projection = dot / energy * reference
    noise = estimate - projection
    return _capped_ratio_db(tf.reduce_sum(projection**2, axis=-1), tf.reduce_sum(noise**2, axis=-1), max_db)


def snr(reference, estimate, max_db: float | None = None):
    """Signal-to-noise ratio in dB over the last axis (not scale-invariant): ``[..., samples]`` -> ``[...]``.

    Unlike :func:`si_sdr` it punishes an estimate at the wrong level, as
    BSSEval's SDR does. ``max_db`` softly caps it like :func:`si_sdr`.
    """
    error = tf.reduce_sum((reference - estimate) ** 2, axis=-1)
    return _capped_ratio_db(tf.reduce_sum(reference**2, axis=-1), error, max_db)


class SeparationModel(keras.Model):
    """Waveform ``[batch, samples]`` -> separated waveforms ``[batch, 2, samples]``.

    ``fit`` takes ``(mixture [batch, samples], sources [batch, 2, samples])``.
    """

    def __init__(self, cfg: ModelConfig, train_cfg: TrainConfig | None = None, precision: str = "float32",
                 **kwargs) -> None:
        super().__init__(**kwargs)
        cfg.validate()
        self.cfg = cfg
        self.train_cfg = train_cfg or TrainConfig()
        self.precision = precision
        self.stft = STFT.from_config_dataclass(cfg, name="stft")  # float32 always
        self.istft = InverseSTFT.from_config_dataclass(cfg, name="istft")
        self.unet = build_unet(cfg, precision)
        self.encoder = None
        if cfg.embed_dim:
            if cfg.speaker_encoder == "ge2e":
                from vsep.ge2e import GE2E

                self.encoder = GE2E(name="ge2e")
            else:
                self.encoder = build_encoder(cfg, precision)
        self.classifier = None  # speaker identification on the embeddings, for training (TrainConfig.speaker_loss)
        if self.encoder is not None and self.train_cfg.speaker_loss > 0 and self.train_cfg.speakers > 0:
            self.classifier = CosineClassifier(self.train_cfg.speakers, name="speaker_classifier")
        self.speaker_tracker = keras.metrics.Mean(name="speaker_ce")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.sisdr_tracker = keras.metrics.Mean(name="si_sdr")
        self.sisdri_tracker = keras.metrics.Mean(name="si_sdri")
        self.snri_tracker = keras.metrics.Mean(name="snri")  # level-aware, like BSSEval's SDR

    # ---- forward

    def _log_mag(self, spectrum):
        return tf.math.log1p(normalise_level(magnitude(spectrum)[:, :, : self.cfg.bins], self.cfg.input_norm))

    def embed(self, enrollment, training=False):
        """Enrollment waveforms ``[B, Le]`` -> speaker embeddings ``[B, embed_dim]`` (conditioned models)."""
        if self.encoder is None:
            raise ValueError("this model is not conditioned on a speaker (embed_dim 0)")
        if self.cfg.speaker_encoder == "ge2e":  # its own mel front end, frozen
            return self.encoder(enrollment)
        return self.encoder(self._log_mag(self.stft(enrollment)), training=training)

    def masks(self, spectrum, training=False, embedding=None):
        """Spectrum ``[B, T, bins + 1, 2]`` -> masks ``[B, T, bins + 1, 2]`` (Nyquist bin repeated).

        A conditioned model (``embed_dim > 0``) needs ``embedding [B, embed_dim]``.
        """
        inp = self._log_mag(spectrum)[..., None]
        if self.encoder is not None:
            if embedding is None:
                raise ValueError("a speaker-conditioned model needs an embedding (an enrollment clip)")
            inp = [inp, tf.cast(embedding, tf.float32)]
        m = tf.cast(self.unet(inp, training=training), tf.float32)
        return tf.concat([m, m[:, :, -1:, :]], axis=2)

    def separate_spectra(self, spectrum, masks, wiener: bool = False, floor: float = 0.0):
        """Masked mixture spectra ``[B, 2, T, bins + 1, 2]`` (mixture phase).

        ``floor`` lifts the target mask to ``floor + (1 - floor) * mask``: the
        target keeps at least that share of every time-frequency cell, so the
        model cannot delete target speech it does not recognise (interference
        is then suppressed by at most ``20 log10(floor)`` dB).
        """
        if floor:
            masks = tf.concat([floor + (1.0 - floor) * masks[..., :1], masks[..., 1:]], axis=-1)
        if wiener:  # soft ratio masks that sum to one
            power = masks**2
            masks = power / (tf.reduce_sum(power, axis=-1, keepdims=True) + EPS)
        return tf.stack([spectrum * masks[..., k : k + 1] for k in range(2)], axis=1)

    def target_and_rest(self, spectra, waves, masks, wiener: bool = False, floor: float = 0.0):
        """Inference output ``[N, 2, L]`` of ``waves [N, L]`` (spectra ``[N, T, F, 2]``, masks ``[N, T, F, 2]``).

        The same target as :meth:`separate_spectra` with one inverse STFT instead of two:
        ``y = istft(g * spectra)`` with ``g`` the target's mask before the floor (its ratio mask
        with ``wiener``), the target ``floor * waves + (1 - floor) * y`` (``y`` with ``wiener``)
        and the rest ``waves - y`` (the STFT reconstructs exactly, so ``waves = istft(spectra)``):
        target and rest sum to the input wherever there is no floor, and the rest is what the
        target's mask leaves, ``1 - g``, rather than the rest's own mask (the two sum to about 1).
        """
        m_t = masks[..., :1]
        if wiener:
            lifted = floor + (1.0 - floor) * m_t if floor else m_t
            p_t, p_r = lifted**2, masks[..., 1:2] ** 2
            m_t, floor = p_t / (p_t + p_r + EPS), 0.0
        y = self.istft(spectra * m_t, length=tf.shape(waves)[1])
        target = floor * waves + (1.0 - floor) * y if floor else y
        return tf.stack([target, waves - y], axis=1)

    def separate_channels(self, mono, channels, wiener=False, floor=0.0, embedding=None):
        """Masks from ``mono [B, L]`` applied to every channel of ``channels [B, C, L]`` -> ``[B, 2, C, L]``.

        Multichannel input keeps its layout: one set of masks (computed on the
        downmix) shapes every channel, so stereo in gives stereo out (:meth:`target_and_rest`).
        """
        masks = self.masks(self.stft(mono), embedding=embedding)  # [B, T, F, 2]
        b, c, length = tf.shape(channels)[0], tf.shape(channels)[1], tf.shape(channels)[2]
        flat = tf.reshape(channels, [b * c, length])
        waves = self.target_and_rest(self.stft(flat), flat, tf.repeat(masks, c, axis=0), wiener, floor)
        return tf.transpose(tf.reshape(waves, [b, c, 2, length]), [0, 2, 1, 3])

    def speaker_masks(self, spectrum, embeddings, wiener=False, floor=0.0):
        """Masks ``[B, T, F, K + 1]`` for ``embeddings [K, D]``: each voice's target mask, then the rest's.

        One U-Net pass per voice (batched). The rest's mask is the least of the
        voices' rest masks: what no voice keeps. One voice: exactly
        :meth:`separate_spectra`'s masks. Several (debate mode): ratio masks
        of the squared claims with no floor, so the louder claim wins softly
        and the outputs sum to the input (``wiener`` and ``floor`` are then
        ignored).
        """
        b, k = tf.shape(spectrum)[0], embeddings.shape[0]
        masks = self.masks(tf.tile(spectrum, [k, 1, 1, 1]), embedding=tf.repeat(embeddings, b, axis=0))
        masks = tf.reshape(masks, tf.concat([[k, b], tf.shape(masks)[1:]], 0))  # [K, B, T, F, 2]
        targets = tf.transpose(masks[..., 0], [1, 2, 3, 0])  # [B, T, F, K]
        rest = tf.reduce_min(masks[..., 1], axis=0)[..., None]
        if k > 1:
            wiener, floor = True, 0.0
        if floor:
            targets = floor + (1.0 - floor) * targets
        masks = tf.concat([targets, rest], axis=-1)
        if wiener:
            power = masks**2
            masks = power / (tf.reduce_sum(power, axis=-1, keepdims=True) + EPS)
        return masks

    def separate_speakers(self, mono, channels, embeddings, wiener=False, floor=0.0):
        """``mono [B, L]``, ``channels [B, C, L]``, ``embeddings [K, D]`` -> ``[B, K + 1, C, L]``: each voice,
        then the rest (:meth:`speaker_masks`, computed on the downmix, shape every channel)."""
        masks = self.speaker_masks(self.stft(mono), embeddings, wiener, floor)
        b, c, length = tf.shape(channels)[0], tf.shape(channels)[1], tf.shape(channels)[2]
        spectra = self.stft(tf.reshape(channels, [b * c, length]))  # [B*C, T, F, 2]
        masks = tf.repeat(masks, c, axis=0)
        waves = tf.stack([self.istft(spectra * masks[..., i : i + 1], length=length)
                          for i in range(embeddings.shape[0] + 1)], axis=1)  # [B*C, K + 1, L]
        return tf.transpose(tf.reshape(waves, [b, c, -1, length]), [0, 2, 1, 3])

    def call(self, waveform, training=False, wiener=False, floor=0.0, embedding=None):
        """``waveform [B, L]`` -> ``[B, 2, L]``: target and rest (:meth:`target_and_rest`)."""
        spectrum = self.stft(waveform)
        masks = self.masks(spectrum, training=training, embedding=embedding)
        return self.target_and_rest(spectrum, tf.cast(waveform, tf.float32), masks, wiener, floor)

    # ---- training

    def _inputs(self, x, training):
        """``x``: mixture ``[B, n]``, or ``(mixture, enrollment [B, Le])`` for a conditioned model
        (``(mixture, enrollment, speaker [B])`` when training with the speaker loss); the enrollment is
        already an embedding ``[B, embed_dim]`` with ``TrainConfig.precomputed_embeddings``."""
        if isinstance(x, (tuple, list)):
            if self.train_cfg.precomputed_embeddings:
                return x[0], tf.cast(x[1], tf.float32)
            return x[0], self.embed(x[1], training=training)
        return x, None

    def _speaker_loss(self, x, embedding):
        """Cross-entropy of the enrollment's speaker from its embedding (0 without labels or classifier)."""
        if self.classifier is None or not isinstance(x, (tuple, list)) or len(x) < 3:
            return 0.0
        ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(x[2], self.classifier(embedding),
                                                                         from_logits=True))
        self.speaker_tracker.update_state(ce)
        return self.train_cfg.speaker_loss * ce

    def _loss(self, mixture, sources, training, embedding=None):
        spectrum = self.stft(mixture)
        masks = self.masks(spectrum, training=training, embedding=embedding)
        loss_name = self.train_cfg.loss
        total = 0.0
        mag = magnitude(spectrum)
        est_wave = None
        if "l1_mag" in loss_name:
            for k in range(2):
                ref = magnitude(self.stft(sources[:, k]))
                total += tf.reduce_mean(tf.abs(masks[..., k] * mag - ref))
        if training and self.train_cfg.keep_weight > 0:
            deleted = deleted_share(magnitude(self.stft(sources[:, 0])), masks[..., 0] * mag)
            total += self.train_cfg.keep_weight * tf.reduce_mean(deleted)
        waveform_loss = {"sisdr": si_sdr, "snr": snr}.get(loss_name.split("+")[-1])
        if waveform_loss is not None or not training:
            est = self.separate_spectra(spectrum, masks)
            length = tf.shape(mixture)[1]
            est_wave = tf.stack([self.istft(est[:, k], length=length) for k in range(2)], axis=1)
        if waveform_loss is not None:
            # both sources; a source that is silent in the reference (target-only / other-only
            # patches) has no SI-SDR: its estimate's energy relative to the mixture is penalised
            energy = tf.reduce_sum(sources**2, axis=-1)
            valid = tf.cast(energy > 1e-6, tf.float32)
            s = waveform_loss(sources, est_wave, max_db=SISDR_CAP_DB)
            quiet = silence_penalty(est_wave, mixture[:, None, :])
            total += tf.reduce_mean(-s / 10.0 * valid + quiet * (1.0 - valid))
        return total, est_wave

    def train_step(self, data):
        x, sources, _ = keras.utils.unpack_x_y_sample_weight(data)  # fit gives (x, y), *_on_batch (x, y, w)
        with tf.GradientTape() as tape:
            mixture, embedding = self._inputs(x, training=True)
            loss, _ = self._loss(mixture, sources, training=True, embedding=embedding)
            loss += self._speaker_loss(x, embedding)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        self.loss_tracker.update_state(loss)
        if self.classifier is not None:
            return {"loss": self.loss_tracker.result(), "speaker_ce": self.speaker_tracker.result()}
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        x, sources, _ = keras.utils.unpack_x_y_sample_weight(data)  # fit gives (x, y), *_on_batch (x, y, w)
        mixture, embedding = self._inputs(x, training=False)
        loss, est = self._loss(mixture, sources, training=False, embedding=embedding)
        self.loss_tracker.update_state(loss)
        target = sources[:, 0]
        # SI-SDR(i) only where there is something to separate: target and interference both present
        # (on target-only patches the mixture baseline is near-infinite and would swamp the mean)
        energy = tf.reduce_sum(sources**2, axis=-1)
        mixed = (energy[:, 0] > 1e-6) & (energy[:, 1] > 1e-6)
        sdr = tf.boolean_mask(si_sdr(target, est[:, 0]), mixed)
        base = tf.boolean_mask(si_sdr(target, mixture), mixed)
        self.sisdr_tracker.update_state(sdr)
        self.sisdri_tracker.update_state(sdr - base)
        gain = snr(target, est[:, 0]) - snr(target, mixture)
        self.snri_tracker.update_state(tf.boolean_mask(gain, mixed))
        return {"loss": self.loss_tracker.result(), "si_sdr": self.sisdr_tracker.result(),
                "si_sdri": self.sisdri_tracker.result(), "snri": self.snri_tracker.result()}

    @property
    def metrics(self):
        extra = [self.speaker_tracker] if self.classifier is not None else []
        return [self.loss_tracker, self.sisdr_tracker, self.sisdri_tracker, self.snri_tracker, *extra]

    def build_for(self, samples: int | None = None) -> SeparationModel:
        """Create the weights by running once on silence of ``samples`` samples."""
        n = samples or self.cfg.patch_samples()
        if self.encoder is None:
            self(tf.zeros([1, n]))
        else:
            embedding = self.embed(tf.zeros([1, n]))
            self(tf.zeros([1, n]), embedding=embedding)
            if self.classifier is not None:
                self.classifier(embedding)
        return self
