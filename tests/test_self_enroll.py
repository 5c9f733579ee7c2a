"""tools/eval_self_enroll.py: enrollment clips cut from held-out target recordings a mixture does not use."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from vsep import enroll, lake

from realdata import TARGET, needs_data, small_lake

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import eval_self_enroll  # noqa: E402

pytestmark = needs_data
RATE = 16000


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory) -> Path:
    return small_lake(tmp_path_factory)


def test_enrollment_is_speech_of_other_recordings_only(lake_dir):
    pool = [e for e in lake.read_index(str(lake_dir)) if e.speaker == TARGET]
    assert len(pool) >= 3
    excluded = {pool[0].source_uri, pool[1].source_uri}
    allowed = [lake.load_clip(str(lake_dir), e) for e in pool if e.source_uri not in excluded]
    clip = eval_self_enroll.enrollment(str(lake_dir), pool, excluded, 4.0, RATE, seed=3)
    assert 0 < len(clip) <= 4 * RATE
    assert np.all(enroll.speech_frames(clip, RATE))  # silences are left out
    # every 20 ms frame of the clip is a frame of an allowed recording, none of an excluded one
    frame = int(enroll.FRAME_S * RATE)
    allowed_frames = {np.round(f, 5).tobytes() for x in allowed for f in x[: len(x) // frame * frame].reshape(-1, frame)}
    probe = clip[: len(clip) // frame * frame].reshape(-1, frame)[:20]
    assert all(np.round(f, 5).tobytes() in allowed_frames for f in probe)
    # the same seed, the same clip
    again = eval_self_enroll.enrollment(str(lake_dir), pool, excluded, 4.0, RATE, seed=3)
    np.testing.assert_array_equal(clip, again)


def test_too_little_held_out_speech_is_refused(lake_dir):
    pool = [e for e in lake.read_index(str(lake_dir)) if e.speaker == TARGET]
    with pytest.raises(ValueError, match="held-out target speech"):
        eval_self_enroll.enrollment(str(lake_dir), pool, {e.source_uri for e in pool}, 30.0, RATE, seed=0)


def test_from_estimate_keeps_frames_where_the_estimate_dominates():
    rng = np.random.default_rng(0)
    n = 2 * RATE
    voice = (0.1 * rng.standard_normal(n)).astype(np.float32)
    other = (0.1 * rng.standard_normal(n)).astype(np.float32)
    other[: n // 2] *= 0.01  # the first second: the voice alone, nearly
    mixture = voice + other
    clip = eval_self_enroll.from_estimate(mixture, voice, RATE, share=0.7)
    frame = int(enroll.FRAME_S * RATE)
    assert len(clip) % frame == 0
    assert abs(len(clip) - n // 2) <= 2 * frame  # the first second, not the second one
    np.testing.assert_array_equal(clip[:frame], voice[:frame])
