"""The Python API, mirroring ``vsep separate``.

    import vsep
    sep = vsep.Separator()                      # bundled model, or Separator("path/to/model")
    out = sep.separate(waveform, sample_rate)   # {"trump": [samples], "rest": [samples]}

    # a speaker-conditioned model: anybody from an enrollment clip; two or more voices: debate mode
    sep = vsep.Separator("runs/c1", enroll={"biden": "biden.wav", "trump": None})
    out = sep.separate(waveform, sample_rate)   # {"biden": ..., "trump": ..., "rest": ...}
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np


class Separator:
    """Separate the model's target speaker from everything else in a waveform."""

    def __init__(
        self, model_dir: str | None = None, wiener: bool | None = None, shifts: int | None = None,
        precision: str | None = None, target_floor: float | None = None, runtime: str | None = None,
        enroll: dict | None = None,
    ) -> None:
        """``wiener``, ``shifts``, ``precision``, ``target_floor``, ``runtime`` as in ``vsep separate``
        (:class:`vsep.config.SeparateConfig`); ``None`` takes the model's own default (its ``separate.json``,
        else the global one). ``enroll``: ``{name: clip}`` for a speaker-conditioned model, ``clip`` a
        path, ``(waveform, sample_rate)``, a list of those (several clips of the person, averaged) or
        ``None`` (a voice stored with the model)."""
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from vsep import model_io
        from vsep import runtime as runtimes

        model_dir = model_io.serving(model_dir, list((enroll or {}).items()))
        given = {"wiener": wiener, "shifts": shifts, "precision": precision, "target_floor": target_floor,
                 "runtime": runtime}
        scfg = dataclasses.replace(model_io.separate_defaults(model_dir),
                                   **{k: v for k, v in given.items() if v is not None})
        served = runtimes.load(model_dir, scfg, _voices(enroll, model_dir))
        self.cfg, self.runtime, self._model_dir, self._model = served.cfg, served.runtime, model_dir, None
        self.names = served.names
        self._separate, self._separate_channels = served.mono, served.channels

    @property
    def model(self):
        """The Keras :class:`vsep.model.SeparationModel` (loaded, with TensorFlow, on first use)."""
        if self._model is None:
            from vsep import model_io

            self._model = model_io.load(self._model_dir)
        return self._model

    @property
    def target(self) -> str:
        """The first voice this separator extracts (the model's target unless others were enrolled)."""
        return self.names[0]

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    def separate(self, waveform: np.ndarray, sample_rate: int, mono: bool = False) -> dict[str, np.ndarray]:
        """``waveform`` ``[samples]`` or ``[samples, channels]`` at ``sample_rate`` ->
        ``{target: y, "rest": y}`` (or one entry per enrolled voice, then ``rest``) float32 at the same rate, length and shape (``mono``: ``[samples]``,
        the downmix); every channel is shaped by the masks of the downmix."""
        from vsep import audio, inference

        x = np.asarray(waveform, dtype=np.float32)
        if x.ndim not in (1, 2) or x.shape[0] == 0:
            raise ValueError(f"waveform must be [samples] or [samples, channels] with samples > 0, got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("waveform contains NaN or inf")
        keep = x.ndim == 2 and x.shape[1] > 1 and not mono
        rows = x.T if keep else audio.to_mono(x)[None]  # [channels, samples]
        rows = np.stack([audio.resample(r, sample_rate, self.sample_rate) for r in rows])
        fn = self._separate_channels if keep else (lambda w: self._separate(w[0])[:, None])
        block = 10 * self.sample_rate
        blocks = (rows[:, i : i + block] for i in range(0, rows.shape[1], block))
        out = np.concatenate(list(inference.stream(blocks, fn, self.cfg)), axis=-1)  # [2, channels, n]
        result = {}
        for name, y in zip(self.names, out):
            y = np.stack([_fit(audio.resample(c, self.sample_rate, sample_rate), x.shape[0]) for c in y], axis=1)
            result[name] = y if keep else y[:, 0]
        return result


def _voices(enroll: dict | None, model_dir: str | None) -> list | None:
    """``{name: clip | [clip, ...] | None}`` (``clip``: a path or ``(waveform, rate)``) -> ``[(name, clip(s) at
    the model's rate or None)]``, checked."""
    from vsep import enroll as enrollment
    from vsep import model_io

    if not enroll:
        return None
    cfg, _, _ = model_io.read_config(str(model_dir or model_io.BUNDLED))
    out = []
    for name, clip in enroll.items():
        enrollment.parse_specs([name])  # the name rules of --enroll
        if isinstance(clip, list):
            clip = enrollment.checked_list(name, [_clip(name, c, cfg.sample_rate, alone=False) for c in clip],
                                           cfg.sample_rate)
        elif clip is not None:
            clip = _clip(name, clip, cfg.sample_rate)
        out.append((name, clip))
    return out


def _clip(name: str, clip, rate: int, alone: bool = True):
    """One enrollment clip, a path (``A,B``: several) or ``(waveform, rate)``, read and checked at ``rate``."""
    from vsep import audio
    from vsep import enroll as enrollment

    least = enrollment.MIN_SPEECH_S if alone else 0.0
    if isinstance(clip, tuple):
        wave, sr = clip
        return enrollment.checked(name, audio.resample(audio.to_mono(np.asarray(wave, np.float32)), sr, rate), rate,
                                  min_speech_s=least)
    return enrollment.read_clips(name, str(clip), rate) if alone else enrollment.read_clip(name, str(clip), rate,
                                                                                             alone=False)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad to exactly ``n`` samples (resampling rounds lengths)."""
    if len(y) >= n:
        return y[:n].astype(np.float32)
    return np.pad(y, (0, n - len(y))).astype(np.float32)
