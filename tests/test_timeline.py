"""The timeline of when the target speaks: streaming, segments, files written by vsep separate."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from vsep import timeline

RATE = 16000


def _sources(seconds: float, on: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    """``[2, n]``: target noise bursts on the ``on`` intervals, a steady quieter rest throughout."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    target = np.zeros(n, np.float32)
    for a, b in on:
        target[int(a * RATE) : int(b * RATE)] = rng.standard_normal(int(b * RATE) - int(a * RATE)) * 0.3
    rest = rng.standard_normal(n).astype(np.float32) * 0.05
    return np.stack([target, rest])


def test_streamed_energies_equal_whole():
    x = _sources(5.0, [(1.0, 2.0)])
    whole = timeline.Tracker(RATE)
    whole.update(x)
    parts = timeline.Tracker(RATE)
    for i in range(0, x.shape[1], 777):  # pieces that do not align with frames
        parts.update(x[:, i : i + 777])
    for a, b in zip(whole.energies(), parts.energies()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-12)


def test_floor_aware_tracker_measures_the_unfloored_target():
    """Outputs separated with a floor (target = f x + (1 - f) y, rest = x - y): the tracker with that
    floor sees y, the target's own estimate, and the floored share no longer reaches the quiet parts."""
    y, other = _sources(4.0, [(1.0, 2.0)])
    x = y + other
    f = 0.3
    floored = np.stack([f * x + (1 - f) * y, x - y])
    plain, aware = timeline.Tracker(RATE), timeline.Tracker(RATE, floor=f)
    plain.update(floored)
    aware.update(floored)
    truth = timeline.Tracker(RATE)
    truth.update(np.stack([y, other]))
    np.testing.assert_allclose(aware.energies()[0], truth.energies()[0], rtol=1e-4, atol=1e-9)
    quiet = slice(int(2.5 / timeline.FRAME_S), int(3.5 / timeline.FRAME_S))  # the target is silent here
    assert plain.energies()[0][quiet].min() > 1e-4 > aware.energies()[0][quiet].max()


def test_segments_follow_the_target():
    on = [(1.0, 2.5), (4.0, 6.0)]
    tracker = timeline.Tracker(RATE)
    tracker.update(_sources(8.0, on))
    segs = timeline.segments(timeline.confidence(*tracker.energies()), timeline.THRESHOLD)
    assert len(segs) == 2, segs
    for seg, (a, b) in zip(segs, on):
        assert abs(seg["start"] - a) <= 0.15 and abs(seg["end"] - b) <= 0.15, segs
        assert 0.5 < seg["confidence"] <= 1.0


def test_short_gaps_closed_and_blips_dropped():
    tracker = timeline.Tracker(RATE)
    tracker.update(_sources(6.0, [(1.0, 2.0), (2.1, 3.0), (4.5, 4.55)]))
    segs = timeline.segments(timeline.confidence(*tracker.energies()), timeline.THRESHOLD)
    assert len(segs) == 1 and segs[0]["start"] < 1.2 and segs[0]["end"] > 2.8, segs


def test_silence_has_no_segments_and_files_agree():
    tracker = timeline.Tracker(RATE)
    tracker.update(np.zeros((2, RATE * 2), np.float32))
    conf = timeline.confidence(*tracker.energies())
    assert timeline.segments(conf, timeline.THRESHOLD) == []
    segs = [{"start": 0.5, "end": 1.25, "confidence": 0.8}]
    doc, table = timeline.documents("trump", segs, 0.2, 2.0)
    assert json.loads(doc)["segments"] == segs and json.loads(doc)["speaker"] == "trump"
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [(float(r["start"]), float(r["end"]), float(r["confidence"])) for r in rows] == [(0.5, 1.25, 0.8)]


def test_the_quiet_floor_silences_a_faint_target_estimate_and_each_mode_has_its_detector():
    """A stretch where the target's estimate is 45 dB below its loudest (a leak, breath, a noise floor) counts as
    speech with the 50 dB floor and as silence with the enrolled voice's 40 dB one."""
    t = np.arange(RATE * 4) / RATE
    tone = np.sin(2 * np.pi * 220 * t).astype(np.float32)
    target = tone * np.where(t < 1.5, 1.0, 10 ** (-45 / 20)).astype(np.float32)
    rest = tone * np.float32(10 ** (-50 / 20))  # a faint rest throughout: the share alone is high everywhere
    tracker = timeline.Tracker(RATE)
    tracker.update(np.stack([target, rest]))
    late = slice(int(2.0 / timeline.FRAME_S), int(3.5 / timeline.FRAME_S))
    for quiet_db, speaks in ((50.0, True), (40.0, False)):
        on = timeline.active(timeline.confidence(*tracker.energies(), quiet_db=quiet_db), timeline.ENROLLED_THRESHOLD)
        assert on[int(0.5 / timeline.FRAME_S)] and bool(on[late].all()) == speaks and bool(on[late].any()) == speaks
    assert timeline.detector(conditioned=False, voices=1) == (timeline.THRESHOLD, timeline.QUIET_DB)
    assert timeline.detector(conditioned=True, voices=1) == (timeline.ENROLLED_THRESHOLD, timeline.ENROLLED_QUIET_DB)
    assert timeline.detector(conditioned=True, voices=2) == (timeline.DEBATE_THRESHOLD, timeline.QUIET_DB)


def test_precision_recall():
    truth = np.array([0, 1, 1, 1, 0, 0], bool)
    pred = np.array([0, 1, 1, 0, 0, 1], bool)
    s = timeline.frame_scores(pred, truth)
    assert s == {"precision": 2 / 3, "recall": 2 / 3}


def test_separate_writes_timeline_and_rejects_bad_threshold(tmp_path):
    wav = tmp_path / "in.wav"
    x = _sources(3.0, [(0.5, 1.5)])
    sf.write(wav, x.sum(axis=0), RATE)
    cmd = [sys.executable, "-m", "vsep.cli", "separate", "--no-progress", "-o", str(tmp_path / "out"), str(wav)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out" / "in" / "trump.timeline.json").read_text())
    assert doc["duration_s"] == 3.0 and doc["threshold"] == timeline.THRESHOLD
    assert all(0 <= s["start"] < s["end"] <= 3.0 for s in doc["segments"])
    assert (tmp_path / "out" / "in" / "trump.timeline.csv").read_text().startswith("start,end,confidence")
    proc = subprocess.run(cmd[:-1] + ["--no-timeline", "-o", str(tmp_path / "out2"), str(wav)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not list((tmp_path / "out2").rglob("*.timeline.*"))
    proc = subprocess.run(cmd[:-1] + ["--timeline-threshold", "1.5", str(wav)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["vsep separate: error: --timeline-threshold must lie in [0, 1], got 1.5"]
