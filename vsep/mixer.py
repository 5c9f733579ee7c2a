"""From a target window to serialized mixture examples: what one prepare worker does.

:class:`ClipCache` reads lake clips with a bounded memory; :class:`Mixer`
turns one normalised target window into ``mixtures_per_window`` examples
(:func:`vsep.schema.encode`), drawing interference from the window's split.
Both are plain Python over :mod:`vsep.mixing`, so Beam's DoFns stay thin and
the logic is testable without a pipeline.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from vsep import mixing, schema, storage
from vsep.audio import AudioError
from vsep.config import PrepareConfig
from vsep.storage import StorageError

log = logging.getLogger("vsep.prepare")
Count = Callable[[str], None]


class ClipCache:
    """Decoded lake clips (float32 ``[samples]``), least recently used dropped beyond ``max_samples``.

    A clip whose bytes no longer have the SHA-1 the lake index recorded, or
    whose decoded length differs from it, was truncated or replaced after
    ``collect``: :class:`vsep.audio.AudioError`, like an unreadable one.
    """

    def __init__(self, lake_root: str, max_samples: int = 64_000_000) -> None:
        self.lake_root = lake_root
        self.max_samples = max_samples
        self.items: OrderedDict[str, np.ndarray] = OrderedDict()
        self.size = 0

    def get(self, clip: mixing.PoolClip) -> np.ndarray:
        x = self.items.get(clip.clip)
        if x is not None:
            self.items.move_to_end(clip.clip)
            return x
        from vsep import audio

        data = storage.read_bytes(storage.join(self.lake_root, clip.clip))
        if clip.clip_sha1 and hashlib.sha1(data).hexdigest() != clip.clip_sha1:
            raise AudioError(f"{clip.clip}: its content no longer matches the lake index: truncated or replaced "
                             "after collect")
        x = audio.to_mono(audio.decode(data, clip.clip)[0])
        if len(x) != clip.num_samples:
            raise AudioError(f"{clip.clip}: {len(x)} samples, the lake index says {clip.num_samples}: "
                             "truncated or replaced after collect")
        self.items[clip.clip] = x
        self.size += len(x)
        while self.size > self.max_samples and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.size -= len(old)
        return x


def interference_pools(pool: Sequence[mixing.PoolClip], target: str) -> dict[tuple[str, str], list[mixing.PoolClip]]:
    """Interference clips by ``(kind, split)``; room responses are under ``("rir", split or "any")``."""
    out: dict[tuple[str, str], list[mixing.PoolClip]] = {}
    for c in pool:
        if c.speaker != target:
            out.setdefault((c.kind, c.split), []).append(c)
    return out


class Mixer:
    """Normalised target windows -> serialized examples, interference from the window's split.

    ``count(name)`` is called once per event (Beam counters in the pipeline).
    """

    MAX_TRIES = 8

    def __init__(self, cfg: PrepareConfig, pools: dict, cache: ClipCache, count: Count) -> None:
        self.cfg, self.pools, self.cache, self.count = cfg, pools, cache, count
        self.loudness = mixing.Loudness(cfg.sample_rate)

    def _interference(self, rng: np.random.Generator, kind: str, split: str) -> tuple[np.ndarray, str] | None:
        """A normalised, non-silent window of speech or noise from ``split``."""
        candidates = self.pools.get((kind, split))
        if not candidates:
            return None
        for _ in range(self.MAX_TRIES):
            clip = mixing.choose_clip(rng, candidates)
            try:
                x = self.cache.get(clip)
            except (StorageError, AudioError) as e:
                log.warning("interference clip %s unreadable: %s", clip.clip, e)
                continue
            seg = mixing.cut_segment(rng, x, self.cfg.window, loop=(kind == "noise"))
            norm = mixing.normalize(seg, self.loudness, self.cfg)
            if norm is not None:
                return norm[0], clip.recording_id
        return None

    def _room(self, rng: np.random.Generator, split: str):
        """A room response of ``split`` (or of any split), or None when the lake has none."""
        rooms = self.pools.get(("rir", "any"), []) + self.pools.get(("rir", split), [])
        return mixing.choose_clip(rng, rooms) if rooms else None

    def _reverb(self, x: np.ndarray, room) -> np.ndarray | None:
        """``x`` in ``room``, loudness-normalised again; None if that fails."""
        norm = mixing.normalize(mixing.reverberate(x, self.cache.get(room)), self.loudness, self.cfg)
        return None if norm is None else norm[0]

    def examples(self, window: dict) -> Iterator[bytes]:
        """``window``: ``window_id``, ``recording_id``, ``split``, normalised ``samples [window]``."""
        cfg, n, split = self.cfg, self.cfg.window, window["split"]
        zeros = np.zeros(n, dtype=np.float32)
        for k in range(cfg.mixtures_per_window):
            rng = mixing.rng_for(cfg.seed, window["window_id"], k)
            plan = mixing.plan_mixture(rng, cfg)
            has_t, has_o, has_n = mixing.needs(plan.kind)
            target, rir_id = window["samples"], ""
            room = self._room(rng, split) if has_t and plan.reverb else None
            wet = None if room is None else self._reverb(target, room)
            if wet is not None:
                target, rir_id = wet, room.recording_id
            other = self._interference(rng, "speech", split) if has_o else (zeros, "")
            noise = self._interference(rng, "noise", split) if has_n else (zeros, "")
            if other is None or noise is None:
                self.count("mixtures_skipped_no_interference")
                continue
            if wet is not None and has_o and cfg.room_prob > 0 and rng.uniform() < cfg.room_prob:
                shared = self._reverb(other[0], room)  # the other voice in the target's room
                if shared is not None:
                    other = (shared, other[1])
                    self.count("mixtures_other_in_room")
            g_other, g_noise = mixing.interference_gains(plan)
            gains = (0.0 if has_t else -120.0, g_other if has_o else -120.0, g_noise if has_n else -120.0)
            sources, scale_db = mixing.mix(target if has_t else zeros, other[0], noise[0], gains, cfg.max_clip_peak)
            self.count(f"examples_{split}")
            self.count(f"kind_{plan.kind}")
            yield schema.encode({
                **sources,
                "example_id": f"{window['window_id']}#{k}",
                "split": split,
                "kind": plan.kind,
                "target_speaker": cfg.target,
                "target_id": window["recording_id"] if has_t else "",
                "other_id": other[1],
                "noise_id": noise[1],
                "rir_id": rir_id,
                "target_gain_db": gains[0],
                "other_gain_db": gains[1],
                "noise_gain_db": gains[2],
                "scale_db": scale_db,
                "tir_db": plan.tir_db if has_t else -120.0,
                "snr_db": plan.snr_db if (has_o and has_n) else 0.0,
                "sample_rate": cfg.sample_rate,
                "num_samples": n,
            })
