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

With ``TrainConfig.pair_share``, that share of every batch comes in *pairs*:
one mixture of two voices (a noise under them in a third of them), once with
each voice's enrollment and that voice as the target, so nothing but the
enrollment tells the two answers apart (:meth:`Sampler.pair`).

With ``TrainConfig.precomputed_embeddings`` (a frozen pretrained encoder),
the enrollment is not a waveform but the unit mean of the cached embeddings
(:func:`bank_embeddings`) of 1 to ``ENROLL_WINDOWS`` other windows of the
voice: 4-32 s of enrollment, and no encoder to run in the training step.

Target, interference and enrollment then pass through their own random
recording channels (:func:`vsep.dataset.channel_eq`) and the whole example
through a random gain, as in :func:`vsep.dataset.remix`.

Elements: ``((mixture [B, n], enrollment [B, ne]), sources [B, 2, n])`` (training with
``speaker_loss`` adds the target's bank speaker index ``[B]`` to the inputs) with
``n = ModelConfig.patch_samples()`` and ``ne`` the bank's window, or ``ne = embed_dim``
with precomputed embeddings.
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
ENROLL_WINDOWS = 8  # most bank windows averaged into one precomputed enrollment
SIMILAR_K = 10  # TrainConfig.similar_pairs draws the second voice among this many nearest voices
PAIR_NOISE = 1 / 3  # share of pairs with a noise under the two voices


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

    def __init__(self, bank: bank_mod.Bank, length: int, target: str, tcfg: TrainConfig, split: str = "this",
                 embeddings: np.ndarray | None = None) -> None:
        self.bank, self.length, self.tcfg, self.embeddings = bank, length, tcfg, embeddings
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
        self.noise_std = tcfg.embed_noise if split == "train" else 0.0
        self.nearest = None
        if tcfg.similar_pairs > 0 and split == "train" and embeddings is not None:
            self.nearest = nearest_voices(embeddings, bank, self.targets, SIMILAR_K)

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

    def enrollment(self, rng: np.random.Generator, s: int, w_t: int) -> np.ndarray:
        """Speaker ``s``'s enrollment, never from window ``w_t``: one other window ``[ne]``, or with
        precomputed embeddings the unit mean ``[D]`` of 1 to ``ENROLL_WINDOWS`` other windows' embeddings."""
        own = self.windows_of[s][self.windows_of[s] != w_t]
        if self.embeddings is None:
            return np.asarray(self.bank.windows[int(rng.choice(own))], np.float32)
        k = int(rng.integers(1, min(ENROLL_WINDOWS, len(own)) + 1))
        mean = self.embeddings[rng.choice(own, k, replace=False)].mean(axis=0)
        if self.noise_std:  # TrainConfig.embed_noise: a nearby voice, still rectified as GE2E's are
            mean = np.maximum(mean / (np.linalg.norm(mean) + 1e-8) + rng.normal(0, self.noise_std, mean.shape), 0)
        return (mean / (np.linalg.norm(mean) + 1e-8)).astype(np.float32)

    def _speaker(self, rng: np.random.Generator) -> int:
        use_named = (self.named is not None and len(self.windows_of[self.named]) >= 2
                     and rng.random() < self.tcfg.target_share)
        return self.named if use_named else self.targets[int(rng.integers(len(self.targets)))]

    def pair(self, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
        """Two examples of one mixture of voices ``a`` and ``b`` (as :meth:`example` returns them): ``a``
        enrolled and kept, then ``b`` enrolled and kept; the other voice and any noise are the rest."""
        n, rate = self.length, self.bank.sample_rate
        a = self._speaker(rng)
        b = self.targets[int(rng.integers(len(self.targets)))]
        if self.nearest is not None and len(self.nearest[a]) and rng.random() < self.tcfg.similar_pairs:
            b = int(rng.choice(self.nearest[a]))
        while b == a:
            b = self.targets[int(rng.integers(len(self.targets)))]
        w_a, w_b = int(rng.choice(self.windows_of[a])), int(rng.choice(self.windows_of[b]))
        x_a, x_b = self._crop(rng, w_a, n), self._crop(rng, w_b, n)
        if rng.random() < TURNS_SHARE:
            gate = turns(n, rate, rng)
            x_a, x_b = x_a * gate, x_b * turns(n, rate, rng, avoid=gate)
        x_b = self._scaled(x_b, x_a, float(rng.uniform(*self.tcfg.tir_db)))
        noise = np.zeros(n, np.float32)
        if rng.random() < PAIR_NOISE:
            noise = self._scaled(self._crop(rng, int(rng.choice(self.noise)), n), x_a + x_b,
                                 float(rng.uniform(*SNR_DB)))
        mix = x_a + x_b + noise
        return [(mix, self.enrollment(rng, a, w_a), np.stack([x_a, x_b + noise]), a),
                (mix, self.enrollment(rng, b, w_b), np.stack([x_b, x_a + noise]), b)]

    def example(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """``(mixture [n], enrollment [ne] or [D], sources [2, n], speaker index)`` before channels and gain."""
        n = self.length
        s = self._speaker(rng)
        w_t = int(rng.choice(self.windows_of[s]))
        target = self._crop(rng, w_t, n)
        enroll = self.enrollment(rng, s, w_t)
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
        pairs = int(round(batch * self.tcfg.pair_share / 2))
        while True:
            parts = [e for _ in range(pairs) for e in self.pair(rng)]
            parts += [self.example(rng) for _ in range(batch - len(parts))]
            yield tuple(np.stack([p[k] for p in parts]) for k in range(4))


def nearest_voices(embeddings: np.ndarray, bank: bank_mod.Bank, voices: list[int], k: int) -> dict[int, np.ndarray]:
    """``{voice: its k nearest voices}`` among ``voices`` by the cosine of their mean window embeddings
    (``embeddings [windows, D]``), leaving out the voice itself and its pitch-shifted copies (``name@shift%``)."""
    means = np.stack([embeddings[bank.of_speaker(v)].mean(axis=0) for v in voices])
    means /= np.linalg.norm(means, axis=1, keepdims=True) + 1e-8
    person = np.array([bank.speakers[v].split("@")[0] for v in voices])
    sim = means @ means.T
    sim[person[:, None] == person[None, :]] = -np.inf
    order = np.argsort(-sim, axis=1)[:, :k]
    return {v: np.array([voices[j] for j in row if np.isfinite(sim[i, j])], np.int64)
            for i, (v, row) in enumerate(zip(voices, order))}


def augment(mixture, enroll, sources, speaker, tcfg: TrainConfig):
    """Own random channel for target, rest and enrollment; random gain; no clipping (TensorFlow)."""
    import tensorflow as tf

    from vsep.dataset import _db, channel_eq

    target, rest = sources[:, 0], sources[:, 1]
    if tcfg.eq_prob > 0:
        target = channel_eq(target, tcfg.eq_prob, tcfg.eq_db, tcfg.lowpass_prob)
        rest = channel_eq(rest, tcfg.eq_prob, tcfg.eq_db, tcfg.lowpass_prob)
        if not tcfg.precomputed_embeddings:
            enroll = channel_eq(enroll, tcfg.eq_prob, tcfg.eq_db, tcfg.lowpass_prob)
    batch = tf.shape(target)[0]
    gain = _db(tf.random.uniform([batch, 1], tcfg.gain_db[0], tcfg.gain_db[1]))
    target, rest = target * gain, rest * gain
    mixture = target + rest
    fix = tf.minimum(1.0, 0.99 / (tf.reduce_max(tf.abs(mixture), axis=-1, keepdims=True) + 1e-12))
    x = (mixture * fix, enroll, speaker) if tcfg.speaker_loss > 0 else (mixture * fix, enroll)
    return x, tf.stack([target * fix, rest * fix], axis=1)


def bank_embeddings(root: str, split: str, model, batch: int = 32, bank: bank_mod.Bank | None = None,
                    shifts: tuple[float, ...] = ()) -> np.ndarray:
    """Embeddings ``[N, embed_dim]`` of every window of the bank's ``split`` by ``model.embed`` (a frozen
    encoder), computed once and cached in the bank as ``<split>.<encoder>-<hash of its weights>.npy``.

    ``bank``: the split with voices made by :func:`vsep.bank.with_voice_shifts` (``shifts``): its original
    windows' embeddings come from that cache, the made voices' from ``...shift<shifts>.npy``.
    """
    import hashlib
    import os

    digest = hashlib.sha1(b"".join(np.asarray(w).tobytes() for w in model.encoder.get_weights())).hexdigest()[:10]
    path = os.path.join(root, f"{split}.{model.cfg.speaker_encoder}-{digest}.npy")
    if os.path.exists(path):
        base = np.load(path)
    else:
        base = _embed_windows(model, bank_mod.load(root, split).windows, batch)
        np.save(path + ".tmp.npy", base)
        os.replace(path + ".tmp.npy", path)
    if not shifts:
        return base
    extra_path = path[: -len(".npy")] + ".shift" + "_".join(f"{s:+g}" for s in shifts) + ".npy"
    if os.path.exists(extra_path):
        extra = np.load(extra_path)
    else:
        extra = _embed_windows(model, bank.windows[len(base):], batch)
        np.save(extra_path + ".tmp.npy", extra)
        os.replace(extra_path + ".tmp.npy", extra_path)
    return np.concatenate([base, extra])


def _embed_windows(model, windows, batch: int) -> np.ndarray:
    """``model.embed`` of ``windows [N, n]`` in batches -> ``[N, embed_dim]`` float32."""
    return np.concatenate([np.asarray(model.embed(np.asarray(windows[i : i + batch], np.float32)), np.float32)
                           for i in range(0, len(windows), batch)])


def make_datasets(root: str, cfg: ModelConfig, tcfg: TrainConfig, model=None):
    """``(train, val, val_steps)``: endless augmented training batches; a fixed, cached set of val batches.

    Validation draws from the bank's val split (speakers, sources and noises
    training never saw) with a fixed seed and no channel augmentation.
    ``tcfg.precomputed_embeddings`` needs ``model`` (its frozen encoder embeds the bank once).
    """
    import tensorflow as tf

    if not 0.0 <= tcfg.similar_pairs <= 1.0:
        raise ValueError(f"similar_pairs must lie in [0, 1], got {tcfg.similar_pairs}")
    if tcfg.embed_noise < 0 or (tcfg.embed_noise and not tcfg.precomputed_embeddings):
        raise ValueError("embed_noise must be 0 or positive, and needs precomputed_embeddings")
    if tcfg.similar_pairs and not tcfg.precomputed_embeddings:
        raise ValueError("similar_pairs needs precomputed_embeddings (the voices are compared by them)")
    train_bank, val_bank = bank_mod.load(root, "train"), bank_mod.load(root, "val")
    if tcfg.voice_shifts:  # more voices: every training voice shifted in pitch and formants (val as it is)
        train_bank = bank_mod.with_voice_shifts(train_bank, tcfg.voice_shifts)
        print(f"train: {len(train_bank.speakers)} training voices with shifts {tcfg.voice_shifts} "
              f"({len(train_bank.windows)} windows)")
    if train_bank.sample_rate != cfg.sample_rate:
        raise ValueError(f"{root}: the bank is at {train_bank.sample_rate} Hz, the model at {cfg.sample_rate} Hz")
    n, ne = cfg.patch_samples(), train_bank.windows.shape[1]
    if n > ne:
        raise ValueError(f"{root}: bank windows ({ne} samples) are shorter than a training patch ({n})")
    if not 0.0 <= tcfg.pair_share <= 1.0:
        raise ValueError(f"pair_share must lie in [0, 1], got {tcfg.pair_share}")
    emb = {"train": None, "val": None}
    if tcfg.precomputed_embeddings:
        if cfg.speaker_encoder != "ge2e" or model is None:
            raise ValueError("precomputed_embeddings needs a frozen pretrained encoder (--speaker-encoder ge2e)")
        emb = {"train": bank_embeddings(root, "train", model, bank=train_bank, shifts=tcfg.voice_shifts),
               "val": bank_embeddings(root, "val", model)}
        ne = cfg.embed_dim
    spec = ((tf.TensorSpec([tcfg.batch_size, n], tf.float32), tf.TensorSpec([tcfg.batch_size, ne], tf.float32),
             tf.TensorSpec([tcfg.batch_size, 2, n], tf.float32), tf.TensorSpec([tcfg.batch_size], tf.int32)))

    def dataset(bank, seed, split):
        sampler = Sampler(bank, n, cfg.target, tcfg, split, emb[split])
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
