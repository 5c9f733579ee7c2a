"""The Python API, mirroring ``vsep separate``.

    import vsep
    sep = vsep.Separator()                      # bundled model, or Separator("path/to/model")
    out = sep.separate(waveform, sample_rate)   # {"trump": [samples], "rest": [samples]}
"""

from __future__ import annotations

import os

import numpy as np

from vsep.config import SeparateConfig

_DEFAULTS = SeparateConfig()


class Separator:
    """Separate the model's target speaker from everything else in a waveform."""

    def __init__(
        self, model_dir: str | None = None, wiener: bool = _DEFAULTS.wiener, shifts: int = _DEFAULTS.shifts
    ) -> None:
        """``wiener`` and ``shifts`` as in ``vsep separate`` (:class:`vsep.config.SeparateConfig`)."""
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from vsep import inference, model_io

        scfg = SeparateConfig(wiener=wiener, shifts=shifts)
        scfg.validate()
        self.model = model_io.load(model_dir)
        self.cfg = self.model.cfg
        self._separate = inference.build_separate_fn(self.model, wiener=scfg.wiener, shifts=scfg.shifts)

    @property
    def target(self) -> str:
        return self.cfg.target

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    def separate(self, waveform: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
        """``waveform`` ``[samples]`` or ``[samples, channels]`` at ``sample_rate`` ->
        ``{target: [samples], "rest": [samples]}`` float32 at the same rate and length."""
        from vsep import audio, inference

        x = np.asarray(waveform, dtype=np.float32)
        if x.ndim not in (1, 2) or x.shape[0] == 0:
            raise ValueError(f"waveform must be [samples] or [samples, channels] with samples > 0, got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("waveform contains NaN or inf")
        mono = audio.resample(audio.to_mono(x), sample_rate, self.sample_rate)
        block = 10 * self.sample_rate
        blocks = (mono[i : i + block] for i in range(0, len(mono), block))
        out = np.concatenate(list(inference.stream(blocks, self._separate, self.cfg)), axis=1)
        result = {}
        for name, y in zip((self.target, "rest"), out):
            y = audio.resample(y, self.sample_rate, sample_rate)
            result[name] = _fit(y, x.shape[0])
        return result


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad to exactly ``n`` samples (resampling rounds lengths)."""
    if len(y) >= n:
        return y[:n].astype(np.float32)
    return np.pad(y, (0, n - len(y))).astype(np.float32)
