"""tf.data for speaker-conditioned models: any speaker as target, mixed on the fly from a speaker bank.

Every example draws a target speaker (the bank's named target with
probability ``TrainConfig.target_share``, otherwise any speaker with two or more
windows), a window of that speaker as the target and another window as the
enrollment clip, and one of these interferences:

- ``speech``: a window of another speaker, at a ratio from ``tir_db``;
- ``both``: another speaker and a noise under it;
- ``noise``: a noise only;
- ``impostor``: another window of the *same* speaker with the voice shifted
  8-20 % up or down (pitch and formants), a sound-alike that must count as rest;
- ``absent``: the enrolled speaker is silent, the mixture is another speaker
  (the model must give back nothing: the timeline and debate mode rely on it);
- ``target``: the enrolled speaker alone (the model must keep everything). Without
  it, C2 learned the shortcut "a voice alone is the rest" and returned silence
  for a clean recording of the enrolled speaker.

In ``TURNS_SHARE`` of the two-voice examples the voices take turns (1-3 s
stretches, a little overlap), as in a debate or an interview, so the model
also learns to follow who is speaking within a window.

Target, interference and enrollment then pass through their own random
recording channels (:func:`vsep.dataset.channel_eq`) and the whole example
through a random gain, as in :func:`vsep.dataset.remix`.

Elements: ``((mixture [B, n], enrollment [B, ne]), sources [B, 2, n])`` (training with
``speaker_loss`` adds the target's bank speaker index ``[B]`` to the inputs) with
``n = ModelConfig.patch_samples()`` and ``ne`` the bank's window.
"""

from __future__ import annotations

import numpy as np

from vsep import bank as bank_mod
from vsep.audio import shift_voice
from vsep.config import ModelConfig, TrainConfig

KINDS = ("speech", "both", "noise", "impostor", "absent", "target")
KIND_WEIGHTS = (0.35, 0.2, 0.1, 0.1, 0.1, 0.15)
TURNS_SHARE = 0.35
SNR_DB = (0.0, 10.0)
IMPOSTOR_SHIFT = (8.0, 20.0)  # percent


def turns(n: int, rate: int, rng: np.random.Generator, avoid: np.ndarray | None = None) -> np.ndarray:
    """A 0/1 gate ``[n]`` of random 1-3 s stretches with 20 ms ramps; with ``avoid``, mostly off
    where ``avoid`` is on (about 20 % overlap): two voices taking turns."""
    gate = np.zeros(n, np.float32)
    i, on = 0, bool(rng.integers(2))
    while i < n:
        k = int(rng.uniform(1.0, 3.0) * rate)
        if avoid is None:
            gate[i : i + k] = on
        else:
            gate[i : i + k] = (avoid[i : i + k] < 0.5) | (rng.random() < 0.2)
        i, on = i + k, not on
    ramp = max(1, int(0.02 * rate))
    return np.convolve(gate, np.ones(ramp) / ramp, mode="same").astype(np.float32)


class Sampler:
    """Draws training examples from one split of a bank (see the module docstring)."""

    def __init__(self, bank: bank_mod.Bank, length: int, target: str, tcfg: TrainConfig, split: str = "this") -> None:
        self.bank, self.length, self.tcfg = bank, length, tcfg
        self.windows_of = [bank.of_speaker(i) for i in range(len(bank.speakers))]
        speech = [i for i, name in enumerate(bank.speakers) if not name.startswith("noise:")]
        self.targets = [i for i in speech if len(self.windows_of[i]) >= 2]
        self.speech = [i for i in speech if len(self.windows_of[i]) >= 1]
        self.noise = np.flatnonzero(bank.is_noise)
        self.named = bank.speakers.index(target) if target in bank.speakers else None
        if len(self.targets) < 1 or len(self.speech) < 2:
            raise ValueError(f"the bank's {split} split needs two speakers, one of them with two or more windows")
        if not len(self.noise):
            raise ValueError(f"the bank has no noise windows in its {split} split (hold out a noise for val too)")

    def _crop(self, rng: np.random.Generator, w: int, n: int) -> np.ndarray:
        x = np.asarray(self.bank.windows[w], np.float32)
        start = int(rng.integers(0, len(x) - n + 1))
        return x[start : start + n]

    def _scaled(self, x: np.ndarray, ref: np.ndarray, ratio_db: float) -> np.ndarray:
        """``x`` scaled so that ``ref`` is ``ratio_db`` above it (energy)."""
        e_r, e_x = float(np.sum(ref**2)), float(np.sum(x**2))
        if e_x < 1e-9 or e_r < 1e-9:
            return x
        return x * np.float32(np.sqrt(e_r / (e_x * 10.0 ** (ratio_db / 10.0))))

    def example(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """``(mixture [n], enrollment [ne], sources [2, n], speaker index)`` before channels and gain."""
        n = self.length
        use_named = (self.named is not None and len(self.windows_of[self.named]) >= 2
                     and rng.random() < self.tcfg.target_share)
        s = self.named if use_named else self.targets[int(rng.integers(len(self.targets)))]
        w_t, w_e = rng.choice(self.windows_of[s], 2, replace=False)
        target = self._crop(rng, int(w_t), n)
        enroll = np.asarray(self.bank.windows[int(w_e)], np.float32)
        kind = KINDS[int(rng.choice(len(KINDS), p=KIND_WEIGHTS))]
        others = [i for i in self.speech if i != s]
        o = others[int(rng.integers(len(others)))]
        other = self._crop(rng, int(rng.choice(self.windows_of[o])), n)
        if kind == "impostor":
            w_i = int(rng.choice([w for w in self.windows_of[s] if w != w_t]))
            shift = float(rng.uniform(*IMPOSTOR_SHIFT) * rng.choice([-1.0, 1.0]))
            other = np.resize(shift_voice(np.asarray(self.bank.windows[w_i], np.float32), shift), n)
        tir = float(rng.uniform(*self.tcfg.tir_db))
        if kind in ("speech", "both", "impostor") and rng.random() < TURNS_SHARE:
            gate = turns(n, self.bank.sample_rate, rng)
            other = other * turns(n, self.bank.sample_rate, rng, avoid=gate)
            target = target * gate
        rest = np.zeros(n, np.float32)
        if kind in ("speech", "both", "impostor", "absent"):
            rest += self._scaled(other, target, tir)
        if kind in ("both", "noise"):
            noise = self._crop(rng, int(rng.choice(self.noise)), n)
            ref = rest if kind == "both" else target
            rest += self._scaled(noise, ref, float(rng.uniform(*SNR_DB)) if kind == "both" else tir)
        if kind == "absent":
            target = np.zeros(n, np.float32)
        if kind == "target":
            rest = np.zeros(n, np.float32)
        return target + rest, enroll, np.stack([target, rest]), s

    def batches(self, batch: int, seed: int | None):
        """Endless batches ``(mixture [B, n], enrollment [B, ne], sources [B, 2, n], speaker [B])``."""
        rng = np.random.default_rng(seed)
        while True:
            parts = [self.example(rng) for _ in range(batch)]
            yield tuple(np.stack([p[k] for p in parts]) for k in range(4))


def augment(mixture, enroll, sources, speaker, tcfg: TrainConfig):
    """Own random channel for target, rest and enrollment; random gain; no clipping (TensorFlow)."""
    import tensorflow as tf

    from vsep.dataset import _db, channel_eq

    target, rest = sources[:, 0], sources[:, 1]
    if tcfg.eq_prob > 0:
        target = channel_eq(target, tcfg.eq_prob, tcfg.eq_db, tcfg.lowpass_prob)
        rest = channel_eq(rest, tcfg.eq_prob, tcfg.eq_db, tcfg.lowpass_prob)
        enroll = channel_eq(enroll, tcfg.eq_prob, tcfg.eq_db, tcfg.lowpass_prob)
    batch = tf.shape(target)[0]
    gain = _db(tf.random.uniform([batch, 1], tcfg.gain_db[0], tcfg.gain_db[1]))
    target, rest = target * gain, rest * gain
    mixture = target + rest
    fix = tf.minimum(1.0, 0.99 / (tf.reduce_max(tf.abs(mixture), axis=-1, keepdims=True) + 1e-12))
    x = (mixture * fix, enroll, speaker) if tcfg.speaker_loss > 0 else (mixture * fix, enroll)
    return x, tf.stack([target * fix, rest * fix], axis=1)


def make_datasets(root: str, cfg: ModelConfig, tcfg: TrainConfig):
    """``(train, val, val_steps)``: endless augmented training batches; a fixed, cached set of val batches.

    Validation draws from the bank's val split (speakers, sources and noises
    training never saw) with a fixed seed and no channel augmentation.
    """
    import tensorflow as tf

    train_bank, val_bank = bank_mod.load(root, "train"), bank_mod.load(root, "val")
    if train_bank.sample_rate != cfg.sample_rate:
        raise ValueError(f"{root}: the bank is at {train_bank.sample_rate} Hz, the model at {cfg.sample_rate} Hz")
    n, ne = cfg.patch_samples(), train_bank.windows.shape[1]
    if n > ne:
        raise ValueError(f"{root}: bank windows ({ne} samples) are shorter than a training patch ({n})")
    spec = ((tf.TensorSpec([tcfg.batch_size, n], tf.float32), tf.TensorSpec([tcfg.batch_size, ne], tf.float32),
             tf.TensorSpec([tcfg.batch_size, 2, n], tf.float32), tf.TensorSpec([tcfg.batch_size], tf.int32)))

    def dataset(bank, seed, split):
        sampler = Sampler(bank, n, cfg.target, tcfg, split)
        return tf.data.Dataset.from_generator(lambda: sampler.batches(tcfg.batch_size, seed), output_signature=spec)

    train = dataset(train_bank, tcfg.seed, "train").map(lambda m, e, s, k: augment(m, e, s, k, tcfg),
                                                num_parallel_calls=2).prefetch(4)
    val_steps = tcfg.validation_steps
    val = dataset(val_bank, 12345, "val").map(lambda m, e, s, k: ((m, e), s)).take(val_steps).cache().repeat()
    return train, val, val_steps


def target_embedding(model, root: str, name: str, windows: int = 64, split: str = "train") -> np.ndarray | None:
    """Mean embedding ``[embed_dim]`` (unit length) of up to ``windows`` bank windows of speaker ``name``."""
    bank = bank_mod.load(root, split)
    if name not in bank.speakers:
        return None
    idx = bank.of_speaker(bank.speakers.index(name))
    idx = idx[np.linspace(0, len(idx) - 1, min(windows, len(idx))).astype(int)]
    emb = np.concatenate([np.asarray(model.embed(np.asarray(bank.windows[idx[i : i + 16]], np.float32)))
                          for i in range(0, len(idx), 16)])
    mean = emb.mean(axis=0)
    return mean / (np.linalg.norm(mean) + 1e-8)
