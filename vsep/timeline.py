"""When the target speaks: a timeline of segments (start, end, confidence) from the separated sources.

Per frame of ``FRAME_S`` seconds, the target's share of the separated energy,
``E_target / (E_target + E_rest)``, measured on the model-rate outputs (so
every channel layout and rate gives the same timeline), smoothed over
``SMOOTH_S``, is the frame's confidence that the target speaks there; frames
at least ``threshold`` above a quiet floor are speech; short gaps are closed
and short blips dropped. :class:`Tracker` accumulates the frame energies piece
by piece while ``vsep separate`` streams, so an hour costs a few MB.

Written next to the audio as ``<name>.timeline.json``
(``{"speaker", "frame_s", "threshold", "segments": [{"start", "end", "confidence"}]}``,
times in seconds) and ``<name>.timeline.csv`` (``start,end,confidence``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

import numpy as np

FRAME_S = 0.02  # analysis frame
SMOOTH_S = 0.2  # moving average of the share
MIN_GAP_S = 0.3  # shorter pauses inside speech are closed
MIN_SEGMENT_S = 0.3  # shorter detections are dropped (the 0.2 s smoothing widens a blip)
QUIET_DB = 50.0  # frames this far below the loudest are silence, whatever the share
REFERENCE_SMOOTH_S = 0.2  # the ground truth's moving average (fixed, whatever the detector's)
THRESHOLD = 0.2  # target share above which a frame is the target speaking (chosen on the cross-source validation set)
DEBATE_THRESHOLD = 0.1  # the same in debate mode, where the other named voices take their share too (val: 0.92 / 0.91)
# one enrolled voice (a conditioned model, no other voice named): threshold and quiet floor chosen together on the
# unseen-voice validation mixtures (0.904 / 0.908 precision / recall at 10 s; 50 dB and 0.2 gave 0.900 / 0.896)
ENROLLED_THRESHOLD = 0.15
ENROLLED_QUIET_DB = 40.0


def detector(conditioned: bool, voices: int) -> tuple[float, float]:
    """``(threshold, quiet dB)`` of the timeline of a run: a conditioned model with ``voices`` named voices
    (two or more: debate mode) or the one-target model."""
    if voices > 1:
        return DEBATE_THRESHOLD, QUIET_DB
    return (ENROLLED_THRESHOLD, ENROLLED_QUIET_DB) if conditioned else (THRESHOLD, QUIET_DB)


@dataclass
class Tracker:
    """Frame energies of every source, fed with model-rate pieces ``[S, k]`` or ``[S, C, k]``
    (the voices, then the rest).

    ``floor``: the target floor the pieces were separated with. With one voice the tracker then
    measures the target's unfloored estimate, ``target - floor * rest`` (exact for the one-target
    model, whose rest is the input minus that estimate: :meth:`vsep.model.SeparationModel.target_and_rest`),
    so the share of the input the floor hands the target everywhere does not count as the target speaking.
    """

    rate: int
    floor: float = 0.0
    frame: int = 0
    powers: list = field(default_factory=list)
    _carry: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.frame = max(1, int(round(FRAME_S * self.rate)))

    def update(self, piece: np.ndarray) -> None:
        x = np.asarray(piece, np.float32)
        x = x if x.ndim == 2 else x.mean(axis=1)  # channels: their mean
        if self.floor and x.shape[0] == 2:
            x = np.stack([x[0] - self.floor * x[1], x[1]])
        if self._carry is not None:
            x = np.concatenate([self._carry, x], axis=-1)
        n = x.shape[-1] // self.frame * self.frame
        self._carry = x[:, n:]
        self.powers.append((x[:, :n].reshape(x.shape[0], -1, self.frame) ** 2).mean(axis=-1))  # [S, frames]

    def energies(self, source: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(power of source [frames], power of all the others [frames])``."""
        if self._carry is not None and self._carry.shape[-1]:
            self.powers.append((self._carry**2).mean(axis=-1, keepdims=True))
            self._carry = None
        if not self.powers:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        p = np.concatenate(self.powers, axis=-1)
        return p[source], p.sum(axis=0) - p[source]


def confidence(target_power: np.ndarray, rest_power: np.ndarray, smooth_s: float = SMOOTH_S,
               quiet_db: float = QUIET_DB) -> np.ndarray:
    """Per-frame confidence ``[frames]`` in [0, 1]: the target share smoothed over ``smooth_s``, 0 where the
    target's estimate is ``quiet_db`` or more below its loudest."""
    total = target_power + rest_power
    share = target_power / (total + 1e-12)
    width = max(1, int(round(smooth_s / FRAME_S)))
    kernel = np.ones(width) / width
    smooth_t = np.convolve(target_power, kernel, mode="same")
    smooth_all = np.convolve(total, kernel, mode="same")
    share = smooth_t / (smooth_all + 1e-12) if len(share) else share
    loudest = float(np.max(smooth_t)) if len(smooth_t) else 0.0
    quiet = smooth_t < loudest * 10 ** (-quiet_db / 10) if loudest > 0 else np.ones_like(share, bool)
    return np.where(quiet, 0.0, share).astype(np.float32)


def active(conf: np.ndarray, threshold: float) -> np.ndarray:
    """Frames where the target speaks ``[frames]`` (bool): above ``threshold``, gaps closed, blips dropped."""
    on = conf >= threshold
    on = _fill_runs(on, False, int(round(MIN_GAP_S / FRAME_S)))  # close short gaps
    return _fill_runs(on, True, int(round(MIN_SEGMENT_S / FRAME_S)))  # drop short blips


def _fill_runs(x: np.ndarray, value: bool, shorter_than: int) -> np.ndarray:
    """Flip interior runs of ``value`` shorter than ``shorter_than`` frames (edge runs of gaps stay)."""
    x = x.copy()
    for start, end in _runs(x, value):
        interior = start > 0 and end < len(x)
        if end - start < shorter_than and (interior or value):
            x[start:end] = not value
    return x


def _runs(x: np.ndarray, value: bool) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], x == value, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2]))


def segments(conf: np.ndarray, threshold: float) -> list[dict]:
    """``[{"start", "end", "confidence"}]`` in seconds; confidence: the mean frame confidence."""
    return [{"start": round(a * FRAME_S, 3), "end": round(b * FRAME_S, 3),
             "confidence": round(float(conf[a:b].mean()), 3)} for a, b in _runs(active(conf, threshold), True)]


def documents(speaker: str, segs: list[dict], threshold: float, duration_s: float) -> tuple[str, str]:
    """The JSON and CSV texts of a timeline."""
    doc = {"speaker": speaker, "frame_s": FRAME_S, "threshold": threshold, "duration_s": round(duration_s, 3),
           "segments": segs}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["start", "end", "confidence"])
    for s in segs:
        w.writerow([s["start"], s["end"], s["confidence"]])
    return json.dumps(doc, indent=1), buf.getvalue()


def write(folder, speaker: str, tracker: Tracker, threshold: float, duration_s: float, source: int = 0,
          quiet_db: float = QUIET_DB) -> list:
    """``folder/<speaker>.timeline.json`` and ``.csv`` of source ``source`` of a fed :class:`Tracker`."""
    from pathlib import Path

    conf = confidence(*tracker.energies(source), quiet_db=quiet_db)
    doc, table = documents(speaker, segments(conf, threshold), threshold, duration_s)
    paths = [Path(folder) / f"{speaker}.timeline.json", Path(folder) / f"{speaker}.timeline.csv"]
    for p, text in zip(paths, (doc, table)):
        p.write_text(text)
    return paths


def reference_activity(reference: np.ndarray, rate: int, frames: int) -> np.ndarray:
    """Ground truth from a clean reference ``[samples]``: :func:`reference_from_power` of its frame powers."""
    t = Tracker(rate)
    t.update(np.stack([reference, np.zeros_like(reference)]))
    return reference_from_power(t.energies()[0], frames)


def reference_from_power(power: np.ndarray, frames: int) -> np.ndarray:
    """Ground truth from a clean reference's frame powers ``[frames']``: frames within 40 dB of its loudest
    (a ``REFERENCE_SMOOTH_S`` moving average), gaps and blips handled as in :func:`active`; ``[frames]`` bool."""
    width = max(1, int(round(REFERENCE_SMOOTH_S / FRAME_S)))
    smooth = np.convolve(power, np.ones(width) / width, mode="same")
    on = smooth > (smooth.max() if len(smooth) else 0) * 1e-4
    on = np.concatenate([on, np.zeros(max(0, frames - len(on)), bool)])[:frames]
    return active(on.astype(np.float32), 0.5)


def frame_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Frame-level precision and recall of "speaks"."""
    n = min(len(predicted), len(truth))
    p, t = predicted[:n], truth[:n]
    tp = float(np.sum(p & t))
    return {"precision": tp / max(float(p.sum()), 1.0), "recall": tp / max(float(t.sum()), 1.0)}
