"""A debate-like crosstalk recording built from held-out (test split, or val) lake clips.

Turns alternate between the target and other speakers; turns overlap (talking
over each other) and a noise bed (crowd, applause, babble) runs underneath.
The references are written beside the mixture, in the layout ``vsep evaluate
--folder`` reads: ``<dir>/mixture.wav``, ``<dir>/<target>.wav``, ``<dir>/rest.wav``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vsep import lake, mixing
from vsep.config import PrepareConfig


def build(
    lake_root: str,
    splits: dict,
    target: str,
    seconds: float = 60.0,
    rate: int = 16000,
    seed: int = 0,
    noise_db: float = -12.0,
    split: str = "test",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mixture, target, rest)`` float32 ``[samples]`` from one split's recordings.

    ``splits`` is the ``splits`` section of a prepared data set's manifest;
    ``split`` is ``test`` for reporting, ``val`` for choosing settings.
    """
    chosen = splits.get(split, {})
    entries = {e.recording_id: e for e in lake.read_index(lake_root)}
    pick = lambda key: [entries[r] for r in chosen.get(key, []) if r in entries]  # noqa: E731
    targets, others, noises = pick("target_recordings"), pick("speech_recordings"), pick("noise_recordings")
    if not targets or not others:
        raise ValueError(f"the {split} split needs target and other-speaker recordings for a crosstalk")
    rng = mixing.rng_for(seed, "crosstalk")
    meter = mixing.Loudness(rate)
    cfg = PrepareConfig(sample_rate=rate)
    n = int(seconds * rate)
    tgt, rest = np.zeros(n, np.float32), np.zeros(n, np.float32)
    pos, turn = 0, 0
    while pos < n - rate:
        is_target = turn % 2 == 0
        pool = targets if is_target else others
        entry = pool[int(rng.integers(len(pool)))]
        clip = lake.load_clip(lake_root, entry)
        dur = min(len(clip), int(rng.uniform(3, 9) * rate), n - pos)
        start = int(rng.integers(0, max(1, len(clip) - dur + 1)))
        seg = clip[start : start + dur]
        norm = mixing.normalize(seg, meter, cfg) if dur >= int(0.4 * rate) else None
        if norm is not None:
            level = 0.0 if is_target else float(rng.uniform(-4, 2))
            seg = norm[0] * np.float32(10 ** (level / 20))
            (tgt if is_target else rest)[pos : pos + dur] += seg
        overlap = int(rng.uniform(0.5, 2.0) * rate)  # the next speaker cuts in
        pos += max(rate // 2, dur - overlap)
        turn += 1
    if noises:
        entry = noises[int(rng.integers(len(noises)))]
        bed = mixing.cut_segment(rng, lake.load_clip(lake_root, entry), n, loop=True)
        norm = mixing.normalize(bed, meter, cfg)
        if norm is not None:
            rest += norm[0] * np.float32(10 ** (noise_db / 20))
    sources, _ = mixing.mix(tgt, rest, np.zeros(n, np.float32), (0.0, 0.0, 0.0), max_peak=0.99)
    return sources["mixture"], sources["target"], sources["other"]


def write(folder: Path, target: str, mixture: np.ndarray, tgt: np.ndarray, rest: np.ndarray, rate: int) -> Path:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    for name, x in (("mixture", mixture), (target, tgt), ("rest", rest)):
        sf.write(folder / f"{name}.wav", x, rate, subtype="FLOAT")
    return folder / "mixture.wav"
