"""Windows, loudness, splits and mixtures: the pure functions behind ``prepare``.

All waveforms are float32 numpy ``[samples]`` at one sample rate. Nothing here
touches Beam or storage, so each step is unit-testable on its own.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vsep.config import PrepareConfig
from vsep.schema import KINDS

SPLITS = ("train", "val", "test")


# ------------------------------------------------------------ splits and seeds


def unit_hash(key: str) -> float:
    """A stable number in [0, 1) from a string (SHA-1 based, not Python's hash)."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:15], 16) / float(1 << 60)


def assign_split(key: str, fractions: Sequence[float]) -> str:
    """``train``/``val``/``test`` for a recording (or speaker) key, by hash."""
    u = unit_hash("split:" + key)
    edge = 0.0
    for name, frac in zip(SPLITS, fractions):
        edge += frac
        if u < edge:
            return name
    return SPLITS[-1]


def split_key(speaker: str, kind: str, recording_id: str, target: str, cfg: PrepareConfig) -> str:
    """What decides a recording's split: its id, or its speaker for non-target speech."""
    if kind == "speech" and speaker != target and cfg.split_other_by == "speaker":
        return "speaker:" + speaker
    return "recording:" + recording_id


def source_name(speaker: str, source_uri: str) -> str:
    """What held-out patterns match: ``<speaker>/<source file name>``, e.g. ``trump/utnet_speech.mp3``."""
    return f"{speaker}/{source_uri.rstrip('/').rsplit('/', 1)[-1]}"


def holdout_split(name: str, cfg: PrepareConfig) -> str | None:
    """``val`` or ``test`` when :func:`source_name` ``name`` matches a held-out pattern, else ``None``."""
    from fnmatch import fnmatchcase

    for split, patterns in (("test", cfg.test_holdout), ("val", cfg.val_holdout)):
        if any(fnmatchcase(name, p) for p in patterns):
            return split
    return None


def split_of(speaker: str, kind: str, recording_id: str, source_uri: str, cfg: PrepareConfig) -> str:
    """A lake recording's split: ``train``, ``val``, ``test`` or ``any`` (room responses serve every split).

    Held-out patterns (``val_holdout``, ``test_holdout``) come first; other
    recordings are split by hash of :func:`split_key`.
    """
    held = holdout_split(source_name(speaker, source_uri), cfg)
    if held:
        return held
    if kind == "rir":
        return "any"
    return assign_split(split_key(speaker, kind, recording_id, cfg.target, cfg), cfg.split_fractions)


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """A generator seeded by ``seed`` and the given keys: same keys, same draws."""
    digest = hashlib.sha256(("|".join(map(str, (seed, *keys)))).encode()).digest()
    return np.random.default_rng(np.frombuffer(digest[:16], dtype=np.uint32))


# ------------------------------------------------------------ windows and loudness


def window_starts(num_samples: int, window: int, hop: int, min_window: int | None = None) -> list[int]:
    """Start offsets of the windows of a clip of ``num_samples``.

    Full windows every ``hop``; a tail of at least ``min_window`` samples past
    the last full window gets one more window aligned to the clip's end. A clip
    shorter than ``window`` but at least ``min_window`` long gives one window
    starting at 0 (:func:`take_window` zero-pads it); a shorter one gives none.
    """
    min_window = window if min_window is None else min_window
    if num_samples < window:
        return [0] if num_samples >= min_window else []
    starts = list(range(0, num_samples - window + 1, hop))
    tail = num_samples - (starts[-1] + window)
    if tail >= min_window and tail > 0:
        starts.append(num_samples - window)
    return starts


def take_window(x: np.ndarray, start: int, window: int) -> np.ndarray:
    """``x[start:start + window]``, zero-padded at the end when ``x`` is shorter."""
    seg = x[start : start + window]
    if len(seg) == window:
        return seg
    out = np.zeros(window, dtype=np.float32)
    out[: len(seg)] = seg
    return out


class Loudness:
    """ITU-R BS.1770 loudness of ``[samples]`` (pyloudnorm), ``-inf`` for silence.

    Build once per worker (the meter's filters are computed at construction).
    """

    def __init__(self, sample_rate: int) -> None:
        import pyloudnorm

        self.rate = sample_rate
        self.meter = pyloudnorm.Meter(sample_rate)

    def __call__(self, x: np.ndarray) -> float:
        if len(x) < int(0.4 * self.rate) or not np.any(x):
            return -math.inf
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyloudnorm warns on clipping; we handle it
            value = float(self.meter.integrated_loudness(x.astype(np.float64)))
        return value if math.isfinite(value) else -math.inf


def normalize(x: np.ndarray, loudness: Loudness, cfg: PrepareConfig) -> tuple[np.ndarray, float] | None:
    """Scale ``x`` to the configured LUFS (or peak) level.

    Returns ``(scaled, gain_db)``, or ``None`` when ``x`` is silent (quieter
    than ``cfg.silence_lufs``, or digital silence): never inf or NaN.
    """
    level = loudness(x)
    if not level > cfg.silence_lufs:  # also catches -inf and NaN
        return None
    if cfg.loudness == "peak":
        peak = float(np.max(np.abs(x)))
        gain_db = cfg.peak_target_db - 20.0 * math.log10(peak)
    else:
        gain_db = cfg.lufs_target - level
    return (x * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32), gain_db


# ------------------------------------------------------------ interference


@dataclass(frozen=True)
class PoolClip:
    """An interference clip: other speech, noise or a room response."""

    kind: str  # speech | noise | rir
    speaker: str
    recording_id: str
    clip: str
    num_samples: int
    split: str
    clip_sha1: str = ""  # empty: not recorded (lakes collected before it was)


def choose_clip(rng: np.random.Generator, pool: Sequence[PoolClip]) -> PoolClip:
    """A clip drawn with probability proportional to its length (every second counts once)."""
    weights = np.array([max(c.num_samples, 1) for c in pool], dtype=np.float64)
    return pool[int(rng.choice(len(pool), p=weights / weights.sum()))]


def cut_segment(rng: np.random.Generator, clip: np.ndarray, window: int, loop: bool) -> np.ndarray:
    """A random ``window``-long segment of ``clip``.

    A shorter clip is looped (noise) or placed at a random offset in silence
    (speech: intermittent talk is realistic).
    """
    n = len(clip)
    if n >= window:
        start = int(rng.integers(0, n - window + 1))
        return clip[start : start + window].astype(np.float32, copy=True)
    if loop:
        reps = int(math.ceil(window / n)) + 1
        start = int(rng.integers(0, n))
        return np.tile(clip, reps)[start : start + window].astype(np.float32)
    out = np.zeros(window, dtype=np.float32)
    start = int(rng.integers(0, window - n + 1))
    out[start : start + n] = clip
    return out


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve ``x`` with a room response (peak-aligned, same length as ``x``)."""
    from scipy.signal import fftconvolve

    onset = int(np.argmax(np.abs(rir)))
    rir = rir[onset:] / (np.sqrt(np.sum(rir[onset:] ** 2)) + 1e-9)
    return fftconvolve(x, rir)[: len(x)].astype(np.float32)


# ------------------------------------------------------------ mixtures


@dataclass(frozen=True)
class MixPlan:
    """The random choices of one mixture."""

    kind: str  # one of schema.KINDS
    tir_db: float  # target-to-interference ratio
    snr_db: float  # other-speech-to-noise ratio ('both' only)
    reverb: bool


def plan_mixture(rng: np.random.Generator, cfg: PrepareConfig) -> MixPlan:
    """Draw kind, ratios and reverb for one mixture."""
    w = np.asarray(cfg.kind_weights, dtype=np.float64)
    kind = KINDS[int(rng.choice(len(KINDS), p=w / w.sum()))]
    return MixPlan(
        kind=kind,
        tir_db=float(rng.uniform(*cfg.tir_db)),
        snr_db=float(rng.uniform(*cfg.snr_db)),
        reverb=bool(rng.uniform() < cfg.reverb_prob),
    )


def needs(kind: str) -> tuple[bool, bool, bool]:
    """Which sources a mixture kind has: ``(target, other speech, noise)``."""
    return {
        "speech": (True, True, False),
        "noise": (True, False, True),
        "both": (True, True, True),
        "target": (True, False, False),
        "other": (False, True, True),
    }[kind]


def interference_gains(plan: MixPlan) -> tuple[float, float]:
    """Gains in dB of other speech and noise relative to the (normalised) target level.

    Each source is first normalised to the same level; then the interference
    sits ``tir_db`` below the target, and in 'both' mixtures the noise sits a
    further ``snr_db`` below the other speaker (powers are combined so that the
    two together are ``tir_db`` below the target).
    """
    has_t, has_o, has_n = needs(plan.kind)
    base = -plan.tir_db if has_t else 0.0
    if has_o and has_n:
        # split the interference power between speech and noise by snr_db
        p_speech = 1.0 / (1.0 + 10.0 ** (-plan.snr_db / 10.0))
        return base + 10 * math.log10(p_speech), base + 10 * math.log10(1.0 - p_speech)
    return base, base


def mix(
    target: np.ndarray,
    other: np.ndarray,
    noise: np.ndarray,
    gains_db: tuple[float, float, float],
    max_peak: float,
) -> tuple[dict[str, np.ndarray], float]:
    """Scale and sum the sources; scale everything down if the mixture would clip.

    Sources are ``[samples]`` at their normalised level (zeros if absent);
    ``gains_db`` applies to ``(target, other, noise)``. Returns the sources and
    mixture (``mixture == target + other + noise`` exactly) and the common
    anti-clipping gain in dB (0 or negative).
    """
    t, o, n = (x * np.float32(10.0 ** (g / 20.0)) for x, g in zip((target, other, noise), gains_db))
    peak = max(float(np.max(np.abs(x))) for x in (t + o + n, t, o, n))
    scale_db = 0.0
    if peak > max_peak:
        scale = np.float32(max_peak / peak)
        t, o, n = t * scale, o * scale, n * scale
        scale_db = 20.0 * math.log10(float(scale))
    t, o, n = (np.asarray(x, dtype=np.float32) for x in (t, o, n))
    mixture = (t + o + n).astype(np.float32)
    return {"mixture": mixture, "target": t, "other": o, "noise": n}, scale_db
