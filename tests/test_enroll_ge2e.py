"""The GE2E-conditioned model: training on embeddings computed once, enrollment without TensorFlow, and
enrollment in one pass over the clip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vsep import bank, enroll

from realdata import ROOT, TARGET, WHEEL, biden_clip, needs_data, needs_wheel

pytestmark = needs_data
tf = pytest.importorskip("tensorflow")


GE2E_ARGS = ["--target", TARGET, "--depth", "3", "--filters", "4", "--patch-frames", "16", "--frame-length", "256",
             "--frame-step", "64", "--fft-length", "256", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch",
             "2", "--validation-steps", "1", "--pair-share", "0.5", "--precomputed-embeddings", "--quiet"]


@pytest.fixture(scope="module")
def ge2e_trained(enroll_bank, tmp_path_factory) -> Path:
    """A tiny GE2E-conditioned model trained for two steps on precomputed embeddings, by ``vsep train``."""
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import ge2e_weights

    from vsep import train

    tmp = tmp_path_factory.mktemp("ge2e")
    if not WHEEL.exists():
        pytest.skip(f"{WHEEL} is absent (make setup downloads it)")
    assert ge2e_weights.main([str(WHEEL), str(tmp / "ge2e.npz")]) == 0
    assert train.main(["--data", str(enroll_bank), *GE2E_ARGS, "--model-dir", str(tmp / "model"), "--embed-dim", "256",
                       "--speaker-encoder", "ge2e", "--speaker-weights", str(tmp / "ge2e.npz")]) == 0
    return tmp / "model"


@needs_wheel
def test_ge2e_model_trains_on_embeddings_computed_once(ge2e_trained, enroll_bank, tmp_path, capsys):
    """``--precomputed-embeddings``: the bank's windows are embedded once by the model's own frozen GE2E
    encoder (cached in the bank, the same as the saved model embeds them), then training runs on them."""
    from vsep import model_io, train

    cached = {p.name.split(".")[0]: np.load(p) for p in enroll_bank.glob("*.ge2e-*.npy")}
    assert sorted(cached) == ["train", "val"]
    b = bank.load(str(enroll_bank), "train")
    assert cached["train"].shape == (len(b.windows), 256)
    model = model_io.load(str(ge2e_trained))
    again = np.asarray(model.embed(np.asarray(b.windows[:3], np.float32)))
    np.testing.assert_allclose(cached["train"][:3], again, atol=1e-4)
    assert json.loads((ge2e_trained / "history.jsonl").read_text().splitlines()[0])["epoch"] == 1
    capsys.readouterr()
    assert train.main(["--data", str(enroll_bank), *GE2E_ARGS, "--model-dir", str(tmp_path / "learned"),
                       "--embed-dim", "8"]) == 2
    assert "precomputed_embeddings needs a frozen pretrained encoder" in capsys.readouterr().err


@needs_wheel
def test_ge2e_enrollment_without_tensorflow_matches_it(ge2e_trained, tmp_path):
    """Next to model.onnx, training writes ge2e.npz: NumPy embeds clips as the model's GE2E layer does (any
    length, shorter than a partial too), and enrolled separation then never imports TensorFlow."""
    import subprocess
    import sys

    from vsep import ge2e_np, model_io, onnx_model

    assert (ge2e_trained / ge2e_np.FILE).is_file()
    digest = onnx_model.weights_digest(ge2e_trained / model_io.WEIGHTS)
    numpy_enc = ge2e_np.load(str(ge2e_trained), None, digest)
    assert ge2e_np.load(str(ge2e_trained), None, "stale") is None
    model = model_io.load(str(ge2e_trained))
    x = sf.read(biden_clip(tmp_path, "a", 10.0), dtype="float32")[0]
    loop = ge2e_np.NumpyGE2E(None, numpy_enc.w, onnx=False)
    for n in (16000, 52000, 160000):  # 1 s (zero-padded to one partial), 3.25 s, 10 s
        keras_e = np.asarray(model.embed(x[None, :n]))
        np.testing.assert_allclose(numpy_enc.embed(x[None, :n]), keras_e, atol=2e-4)  # ONNX LSTM ops
        np.testing.assert_allclose(loop.embed(x[None, :n]), keras_e, atol=2e-4)  # the NumPy loop
    mix = tmp_path / "mix.wav"
    sf.write(mix, x[:32000] + np.random.default_rng(0).normal(0, 0.05, 32000).astype(np.float32), 16000)
    code = ("import sys; from vsep import separate; rc = separate.main(sys.argv[1:]); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'; "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(mix), "--model", str(ge2e_trained), "--enroll",
                           f"a={tmp_path / 'a.wav'}", "--runtime", "onnx", "-o", str(tmp_path / "o"), "--no-progress"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "mix" / "a.wav").exists()


@needs_wheel
def test_ge2e_enrollment_is_one_pass_the_mean_of_its_parts(ge2e_trained, tmp_path):
    """A GE2E model's enrollment embeds every sample of the clip once: its 4 s parts (which the several-voices
    check compares) and the tail, whose unit mean is the embedding, as training's enrollments were means of
    4 s windows; the SavedModel's ``embed`` signature makes the same embedding."""
    from vsep import export, ge2e_np, model_io, onnx_model

    model = model_io.load(str(ge2e_trained))
    enc = ge2e_np.load(str(ge2e_trained), model.cfg, onnx_model.weights_digest(ge2e_trained / model_io.WEIGHTS))
    x = enroll.read_clip("a", str(biden_clip(tmp_path, "a", 12.0)), 16000)  # read, at 16 kHz, its speech
    part = int(enroll.PART_S * 16000)
    tail = x[2 * part:]
    assert len(x) < 3 * part and len(tail) >= enroll.TAIL_S * 16000
    seen = []

    class Counting:
        cfg = model.cfg

        def embed(self, clips):
            seen.append(np.asarray(clips).size)
            return enc.embed(clips)

    got = enroll.embed_clip(Counting(), "a", x)
    assert sum(seen) == len(x)  # one pass
    unit = [e / np.linalg.norm(e) for e in (*enc.embed(x[: 2 * part].reshape(2, part)), enc.embed(tail[None])[0])]
    mean = np.mean(unit, axis=0)
    np.testing.assert_allclose(got, mean / np.linalg.norm(mean), atol=1e-5)
    import tensorflow as tf

    saved = tf.saved_model.load(export.export(str(ge2e_trained), str(tmp_path / "sm")))
    np.testing.assert_allclose(saved.signatures["embed"](clip=tf.constant(x))["embedding"].numpy(), got, atol=2e-4)


SOUNDBITES = ["pamblam_corn-pop-was-a-bad-dude.mp3", "pamblam_i-make-no-apologize.mp3", "pamblam_clap-for-that.mp3"]


@needs_wheel
def test_several_soundbites_of_one_person_enroll_together(ge2e_trained, tmp_path, capsys):
    """``NAME=A,B,C``: Biden's real 1.8-2.5 s soundbites, each too short alone, enroll together (their speech
    counts together, the voice is the unit mean of each clip's vectors); the API takes a list; a missing clip
    or an empty path in the list is one line before any work."""
    import vsep
    from vsep import audio, model_io, separate

    folder = ROOT.parent / "shared" / "data" / "speakers" / "biden"
    paths = [str(folder / n) for n in SOUNDBITES]
    mix = tmp_path / "mix.wav"
    sf.write(mix, audio.load((folder / "pamblam_poor-kids.mp3").read_bytes(), 16000), 16000)
    out = tmp_path / "out"

    def run(spec: str) -> tuple[int, list[str]]:
        rc = separate.main([str(mix), "--model", str(ge2e_trained), "--enroll", spec, "-o", str(out), "--no-progress"])
        return rc, capsys.readouterr().err.strip().splitlines()

    rc, err = run(f"biden={paths[0]}")
    assert rc == 2 and len(err) == 1 and "at least 3 s" in err[0] and not out.exists()
    for spec, msg in ((f"biden={paths[0]},{tmp_path / 'nope.wav'}", "cannot read"),
                      (f"biden={paths[0]},,{paths[1]}", "empty clip path")):
        rc, err = run(spec)
        assert rc == 2 and len(err) == 1 and msg in err[0] and not out.exists()
    assert run(f"biden={','.join(paths)}")[0] == 0
    assert (out / "mix" / "biden.wav").exists() and (out / "mix" / "rest.wav").exists()

    model = model_io.load(str(ge2e_trained))
    clips = enroll.read_specs([f"biden={','.join(paths)}"], str(ge2e_trained))[0][1]
    assert isinstance(clips, list) and len(clips) == 3 and all(len(c) < enroll.PART_S * 16000 for c in clips)
    unit = [e / np.linalg.norm(e) for e in (np.asarray(model.embed(c[None]))[0] for c in clips)]
    mean = np.mean(unit, axis=0)
    got = enroll.embed_clip(model, "biden", clips)
    np.testing.assert_allclose(got, mean / np.linalg.norm(mean), atol=1e-5)
    assert float(got @ unit[0]) < 1 - 1e-4  # the other clips count
    wave = audio.load(Path(paths[1]).read_bytes(), 16000)
    sep = vsep.Separator(str(ge2e_trained), enroll={"biden": [paths[0], (wave, 16000), paths[2]]})
    assert sep.target == "biden"
    assert list(sep.separate(clips[0], 16000)) == ["biden", "rest"]


@needs_wheel
def test_voice_shifts_make_new_training_voices_embedded_once(ge2e_trained, enroll_bank, tmp_path, capsys):
    """``--voice-shifts``: every training voice, resampled in pitch and formants, is a voice of its own (its
    windows cut from its shifted windows end to end; noises and the original windows untouched); the made
    voices' embeddings are computed once and cached beside the bank's; a run trains on them."""
    import shutil

    from vsep import audio, enroll_data, model_io, train

    root = tmp_path / "bank"
    shutil.copytree(enroll_bank, root)
    b = bank.load(str(root), "train")
    v = bank.with_voice_shifts(b, (-12.0, 12.0))
    n = b.windows.shape[1]
    np.testing.assert_array_equal(v.windows[: len(b.windows)], b.windows)
    assert v.speakers[: len(b.speakers)] == b.speakers and not v.is_noise[len(b.windows):].any()
    name = next(s for s in b.speakers if not s.startswith("noise:"))
    own = np.asarray(b.windows[b.of_speaker(b.speakers.index(name))], np.float32).reshape(-1)
    for pct in (-12.0, 12.0):
        made = v.of_speaker(v.speakers.index(f"{name}@{pct:+g}%"))
        shifted = audio.shift_voice(own, pct)
        assert len(made) == len(shifted) // n  # higher voices are shorter: fewer windows
        np.testing.assert_allclose(np.asarray(v.windows[made], np.float32).reshape(-1), shifted[: len(made) * n],
                                   atol=2e-3)
    assert not any("noise:" in s and "@" in s for s in v.speakers)

    model = model_io.load(str(ge2e_trained))
    emb = enroll_data.bank_embeddings(str(root), "train", model, bank=v, shifts=(-12.0, 12.0))
    assert emb.shape == (len(v.windows), 256)
    extra = sorted(root.glob("train.ge2e-*.shift-12_+12.npy"))
    assert len(extra) == 1
    k = len(b.windows)
    np.testing.assert_allclose(emb[k : k + 2], np.asarray(model.embed(np.asarray(v.windows[k : k + 2], np.float32))),
                               atol=1e-4)
    stamp = extra[0].stat().st_mtime_ns
    again = enroll_data.bank_embeddings(str(root), "train", model, bank=v, shifts=(-12.0, 12.0))
    np.testing.assert_array_equal(again, emb)
    assert extra[0].stat().st_mtime_ns == stamp  # from the cache
    capsys.readouterr()
    out = tmp_path / "shifted"
    assert train.main(["--data", str(root), *GE2E_ARGS, "--model-dir", str(out), "--init-from", str(ge2e_trained),
                       "--embed-dim", "256", "--speaker-encoder", "ge2e", "--voice-shifts", "-12", "12"]) == 0
    assert f"{len(v.speakers)} training voices" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["train"]["voice_shifts"] == [-12.0, 12.0]


@needs_wheel
def test_a_resumed_ge2e_run_keeps_the_pretrained_encoder(ge2e_trained, tmp_path):
    """The checkpoints do not hold the frozen GE2E's LSTMs (training on precomputed embeddings never calls it):
    a resumed run loads them again, so its embeddings and saved model are the pretrained encoder's, not random."""
    import keras

    from vsep import model_io, train
    from vsep.config import TrainConfig
    from vsep.model import SeparationModel

    mcfg, _, _ = model_io.read_config(str(ge2e_trained))
    tcfg = TrainConfig(precomputed_embeddings=True, speaker_weights=str(ge2e_trained.parent / "ge2e.npz"))

    def compiled():
        model = SeparationModel(mcfg, tcfg).build_for()
        model.compile(optimizer=keras.optimizers.Adam())
        model.optimizer.build(model.trainable_variables)
        return model

    first = compiled()
    assert train.starting_weights(first, train.TrainingState(str(tmp_path), first, tcfg), mcfg, tcfg, None) == 0
    state = train.TrainingState(str(tmp_path), first, tcfg)
    state.manager.save(checkpoint_number=3)
    (tmp_path / "checkpoints" / "state.json").write_text(json.dumps({**state.state, "epoch": 3}))
    resumed = compiled()
    random = [w.copy() for w in resumed.encoder.get_weights()]
    assert train.starting_weights(resumed, train.TrainingState(str(tmp_path), resumed, tcfg), mcfg, tcfg, None) == 3
    pairs = list(zip(first.encoder.get_weights(), resumed.encoder.get_weights(), random))
    assert len(pairs) > 2 and any(np.abs(w - r).max() > 1e-3 for w, _, r in pairs)
    for want, got, _ in pairs:
        np.testing.assert_array_equal(got, want)
