"""Supervised NMF separation: the classic baseline (learned bases for target and interference).

Magnitude spectra come from the model's own STFT layer (one STFT for every
method). Bases ``W_target`` and ``W_rest`` (``[bins, k]``) are learned with
KL-divergence multiplicative updates on training-split target and
interference spectra; a mixture is separated by fitting activations with the
bases fixed and applying the ratio (Wiener-style) masks.

Bases are stored as ``.npz`` (plain arrays, no pickling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-10


def _kl_updates(v: np.ndarray, w: np.ndarray, h: np.ndarray, iters: int, update_w: bool) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicative KL-NMF updates of ``V ~ W H`` (``V [F, N]``, ``W [F, K]``, ``H [K, N]``)."""
    ones = np.ones_like(v)
    for _ in range(iters):
        wh = w @ h + EPS
        h *= (w.T @ (v / wh)) / (w.T @ ones + EPS)
        if update_w:
            wh = w @ h + EPS
            w *= ((v / wh) @ h.T) / (ones @ h.T + EPS)
            norm = w.sum(axis=0, keepdims=True) + EPS
            w /= norm
            h *= norm.T
    return w, h


def learn_bases(spectra: np.ndarray, components: int, iters: int = 100, seed: int = 0) -> np.ndarray:
    """Bases ``[F, components]`` of magnitude spectra ``[F, N]`` (columns sum to one)."""
    rng = np.random.default_rng(seed)
    f, n = spectra.shape
    w = rng.uniform(0.1, 1.0, (f, components)).astype(np.float32)
    h = rng.uniform(0.1, 1.0, (components, n)).astype(np.float32)
    w, _ = _kl_updates(spectra.astype(np.float32), w, h, iters, update_w=True)
    return w


@dataclass
class NMFSeparator:
    """Fixed bases for the target and for the rest."""

    w_target: np.ndarray  # [F, Kt]
    w_rest: np.ndarray  # [F, Kr]
    iters: int = 50

    def masks(self, mix_mag: np.ndarray) -> np.ndarray:
        """Mixture magnitude ``[F, T]`` -> ratio masks ``[2, F, T]`` (target, rest), summing to one."""
        w = np.concatenate([self.w_target, self.w_rest], axis=1)
        h = np.full((w.shape[1], mix_mag.shape[1]), 0.5, dtype=np.float32)
        _, h = _kl_updates(mix_mag.astype(np.float32), w, h, self.iters, update_w=False)
        kt = self.w_target.shape[1]
        t = self.w_target @ h[:kt]
        r = self.w_rest @ h[kt:]
        total = t + r + EPS
        return np.stack([t / total, r / total])

    def save(self, path: str) -> None:
        np.savez(path, w_target=self.w_target, w_rest=self.w_rest, iters=np.array(self.iters))

    @classmethod
    def load(cls, path: str) -> NMFSeparator:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["w_target"], z["w_rest"], int(z["iters"]))


def fit_from_examples(examples, magnitude_fn, components: int = 32, max_frames: int = 20000, seed: int = 0) -> NMFSeparator:
    """Learn bases from ``(target [n], rest [n])`` waveform pairs.

    ``magnitude_fn``: waveform ``[n]`` -> magnitude ``[F, T]`` (the model's STFT).
    """
    tgt, rest, frames = [], [], 0
    for target, interference in examples:
        if np.sum(target**2) > 1e-6:
            tgt.append(magnitude_fn(target))
        if np.sum(interference**2) > 1e-6:
            rest.append(magnitude_fn(interference))
        frames += tgt[-1].shape[1] if tgt else 0
        if frames >= max_frames:
            break
    if not tgt or not rest:
        raise ValueError("NMF needs training examples with both target and interference")
    w_t = learn_bases(np.concatenate(tgt, axis=1)[:, :max_frames], components, seed=seed)
    w_r = learn_bases(np.concatenate(rest, axis=1)[:, :max_frames], components * 2, seed=seed + 1)
    return NMFSeparator(w_t, w_r)
