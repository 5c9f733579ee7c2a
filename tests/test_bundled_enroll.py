"""The bundled enrollment model (``vsep/models/enroll``): which model a command serves, and that it extracts
voices it never had as targets, from a corpus it never saw, by their enrollment clips alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from vsep import model_io

from realdata import DATA, needs_data


def test_the_enrollment_model_serves_clips_and_debates_the_one_target_model_the_rest():
    enroll = str(model_io.BUNDLED_ENROLL)
    assert (model_io.BUNDLED_ENROLL / model_io.CONFIG).exists(), "the enrollment model is part of the package"
    assert model_io.serving(None, None) is None  # no voice asked for: the one-target model
    assert model_io.serving(None, [("trump", None)]) is None  # its own target, by name
    assert model_io.serving(None, [("joe", "joe.wav")]) == enroll
    assert model_io.serving(None, [("trump", None), ("joe", "joe.wav")]) == enroll
    assert model_io.serving(None, [("trump", None), ("biden", None)]) == enroll  # debate mode of stored voices
    assert model_io.serving("runs/mine", [("joe", "joe.wav")]) == "runs/mine"  # a model given is the model
    cfg, _, _ = model_io.read_config(enroll)
    assert cfg.embed_dim > 0 and "trump" in model_io.read_embeddings(enroll)


def _voice(name: str, files: slice, seconds: float) -> np.ndarray:
    """``seconds`` of a held-out VCC2016 voice at 16 kHz, mono, its files concatenated."""
    from vsep import audio

    paths = sorted((DATA / "speakers" / name).glob("*.opus"))[files]
    x = np.concatenate([audio.load(p.read_bytes(), 16000, p.name) for p in paths])
    assert len(x) >= seconds * 16000, f"{name}: {len(x) / 16000:.1f} s of audio, {seconds} s wanted"
    return x[: int(seconds * 16000)].astype(np.float32)


def _si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    a = np.dot(est, ref) / (np.dot(ref, ref) + 1e-12)
    return float(10 * np.log10(np.sum((a * ref) ** 2) / (np.sum((a * ref - est) ** 2) + 1e-12)))


@needs_data
def test_the_bundled_enrollment_model_extracts_unseen_voices_by_their_clips(monkeypatch):
    """Two VCC2016 voices (held out of training with their whole corpus) at 0 dB: enrolled with 30 s of
    other recordings, each comes out clearly better than the mixture, served without TensorFlow."""
    import vsep

    clips = {n: _voice(n, slice(0, 40), 30.0) for n in ("vcc2016-SF1", "vcc2016-SM1")}
    a, b = (_voice(n, slice(60, 80), 8.0) for n in ("vcc2016-SF1", "vcc2016-SM1"))
    b *= np.sqrt(np.sum(a**2) / np.sum(b**2))
    mix = a + b
    sep = vsep.Separator(enroll={"she": (clips["vcc2016-SF1"], 16000), "he": (clips["vcc2016-SM1"], 16000)})
    assert list(sep.names) == ["she", "he", "rest"] and sep.runtime.startswith("onnx")
    out = sep.separate(mix, 16000)
    np.testing.assert_allclose(out["she"] + out["he"] + out["rest"], mix, atol=1e-3)
    gains = {"she": _si_sdr(out["she"], a) - _si_sdr(mix, a), "he": _si_sdr(out["he"], b) - _si_sdr(mix, b)}
    assert min(gains.values()) > 3.0, gains
    swapped = vsep.Separator(enroll={"she": (clips["vcc2016-SM1"], 16000)}).separate(mix, 16000)["she"]
    assert _si_sdr(swapped, b) - _si_sdr(mix, b) > 3.0  # the clip, not the voice, chooses


@needs_data
def test_separate_with_a_clip_and_no_model_uses_the_enrollment_model(tmp_path):
    from vsep import separate

    clip = tmp_path / "she.wav"
    sf.write(clip, _voice("vcc2016-SF1", slice(0, 40), 20.0), 16000)
    mix = tmp_path / "mix.wav"
    sf.write(mix, _voice("vcc2016-SM1", slice(60, 70), 3.0), 16000)
    rc = separate.main([str(mix), "--enroll", f"she={clip}", "-o", str(tmp_path / "out"), "--no-progress"])
    assert rc == 0
    assert sorted(p.name for p in Path(tmp_path / "out" / "mix").glob("*.wav")) == ["rest.wav", "she.wav"]
