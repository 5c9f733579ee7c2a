"""The pretrained GE2E speaker encoder (vsep/ge2e.py, tools/ge2e_weights.py) and a model conditioned on it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from vsep import model_io
from vsep.config import ModelConfig, TrainConfig

from realdata import DATA, WHEEL, needs_data, needs_wheel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import ge2e_weights  # noqa: E402
import speaker_eer  # noqa: E402

tf = pytest.importorskip("tensorflow")

TINY = ModelConfig(depth=3, filters=4, frame_length=256, frame_step=64, fft_length=256, patch_frames=32,
                   chunk_frames=64, embed_dim=256, speaker_encoder="ge2e")
READERS = ("libri-1069", "libri-1040", "libri-1098")  # three LibriSpeech readers, one clip of 14-16 s each


def _windows(speaker: str, count: int = 3, seconds: float = 4.0) -> np.ndarray:
    from vsep import audio

    clip = sorted((DATA / "speakers" / speaker).glob("*.flac"))[0]
    x = audio.load(clip.read_bytes(), 16000, str(clip))
    n = int(seconds * 16000)
    return np.stack([x[i * n : (i + 1) * n] for i in range(count)]).astype(np.float32)


@needs_data
@needs_wheel
def test_converted_weights_tell_readers_apart(tmp_path):
    """Every same-reader pair of 4 s windows is closer than every pair of two readers; with the
    layer's own random weights that does not hold."""
    from vsep.ge2e import GE2E, load_npz

    npz = tmp_path / "ge2e.npz"
    assert ge2e_weights.main([str(WHEEL), str(npz)]) == 0
    x = np.concatenate([_windows(s) for s in READERS])
    who = np.repeat(np.arange(len(READERS)), 3)
    layer = GE2E()
    layer.build((None, None))
    random = np.asarray(layer(x))
    load_npz(layer, str(npz))
    e = np.asarray(layer(x))
    assert e.shape == (9, 256)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)

    def margins(emb: np.ndarray) -> tuple[float, float]:
        """(least same-reader cosine - greatest cross-reader one, mean same - mean cross)"""
        cos = emb @ emb.T
        same, pair = who[:, None] == who[None, :], ~np.eye(len(who), dtype=bool)
        return (float(cos[same & pair].min() - cos[~same].max()),
                float(cos[same & pair].mean() - cos[~same].mean()))

    print("pretrained", margins(e), "random", margins(random))
    assert margins(e)[0] > 0 and margins(e)[1] > 0.15
    assert margins(random)[1] < margins(e)[1] / 2


def test_bad_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "pretrained.pt"
    bad.write_bytes(b"not a checkpoint")
    assert ge2e_weights.main([str(bad), str(tmp_path / "out.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ge2e_weights: error:")
    assert not (tmp_path / "out.npz").exists()


def test_ge2e_model_keeps_its_encoder_weights(tmp_path):
    """A GE2E-conditioned model saves the (frozen) encoder with its weights and loads it back."""
    from vsep.model import SeparationModel

    model = SeparationModel(TINY).build_for()
    assert not model.encoder.trainable_weights  # frozen: training never moves it
    assert not [v.path for v in model.trainable_variables if v.path.startswith("ge2e/")]
    rng = np.random.default_rng(0)
    model.encoder.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) for w in model.encoder.get_weights()])
    clip = rng.standard_normal((2, 16000 * 3)).astype(np.float32) * 0.1
    before = np.asarray(model.embed(clip))
    model_io.save_weights(model, str(tmp_path))
    model_io.write_config(str(tmp_path), model_io.config_document(TINY, TrainConfig()))
    after = np.asarray(model_io.load(str(tmp_path)).embed(clip))
    np.testing.assert_allclose(after, before, atol=1e-5)
    assert before.shape == (2, 256)


def test_ge2e_needs_256_dims_and_its_weights():
    from vsep import train

    with pytest.raises(ValueError, match="embed_dim 256"):
        ModelConfig(embed_dim=128, speaker_encoder="ge2e").validate()
    with pytest.raises(ValueError, match="--speaker-weights"):
        train._ge2e_weights(None, TrainConfig(), None)


def test_eer_of_separable_and_random_embeddings():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((5, 16))
    who = np.repeat(np.arange(5), 4)
    tight = centres[who] + 0.05 * rng.standard_normal((20, 16))
    tight /= np.linalg.norm(tight, axis=1, keepdims=True)
    rate, same, diff = speaker_eer.eer(tight, who)
    assert rate == 0.0 and same > diff
    noise = rng.standard_normal((20, 16))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    assert speaker_eer.eer(noise, who)[0] > 0.2


@needs_data
@needs_wheel
def test_several_voices_check_uses_the_ge2e_threshold(tmp_path):
    """A GE2E model refuses a clip of two readers (its parts agree below AGREEMENT['ge2e']) and takes one
    reader's clip; the learned encoder's threshold (0.3) would have let both through."""
    from vsep import enroll
    from vsep.ge2e import load_npz
    from vsep.model import SeparationModel

    npz = tmp_path / "ge2e.npz"
    assert ge2e_weights.main([str(WHEEL), str(npz)]) == 0
    model = SeparationModel(TINY).build_for()
    load_npz(model.encoder, str(npz))
    one = np.concatenate(_windows(READERS[0]))
    two = np.concatenate([*_windows(READERS[1], 2), *_windows(READERS[2], 2)])
    assert enroll.embed_clip(model, "a", enroll.checked("a", one, 16000)).shape == (256,)
    least = enroll.part_agreement(model, enroll.checked("ab", two, 16000))[0]
    assert enroll.AGREEMENT["learned"] < least < enroll.AGREEMENT["ge2e"]
    with pytest.raises(enroll.EnrollError, match="more than one voice"):
        enroll.embed_clip(model, "ab", enroll.checked("ab", two, 16000))
