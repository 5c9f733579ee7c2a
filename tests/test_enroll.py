"""Any speaker from an enrollment clip: the speaker bank, on-the-fly mixing, the conditioned model,
debate mode, and the bad enrollments that must stop with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vsep import bank, enroll, lake, mixing
from vsep.config import ModelConfig, PrepareConfig, TrainConfig

from realdata import ROOT, TARGET, WHEEL, needs_data, needs_wheel, small_lake

pytestmark = needs_data
tf = pytest.importorskip("tensorflow")

TINY = ModelConfig(target=TARGET, depth=3, filters=4, patch_frames=16, frame_length=256, frame_step=64,
                   fft_length=256, embed_dim=8)
PREP = PrepareConfig(target=TARGET, window_s=2.0, split_fractions=(1.0, 0.0, 0.0),
                     val_holdout=("biden/*", "libri-1034/*", "babble/*"), test_holdout=("libri-11*/*",))


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory) -> Path:
    return small_lake(tmp_path_factory)


@pytest.fixture(scope="module")
def bank_dir(lake_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bank")
    assert bank.main(["--lake", str(lake_dir), "--output", str(out), "--target", TARGET, "--window-s", "2.0",
                      "--split-fractions", "1", "0", "0", "--val-holdout", "biden/*", "libri-1034/*", "babble/*",
                      "--test-holdout", "libri-11*/*"]) == 0
    return out


def test_bank_splits_as_prepare_does_and_windows_are_normalised(lake_dir, bank_dir):
    doc = json.loads((bank_dir / "bank.json").read_text())
    entries = lake.read_index(str(lake_dir))
    for split in bank.SPLITS:
        b = bank.load(str(bank_dir), split) if doc["splits"][split]["windows"] else None
        if b is None:
            continue
        assert b.windows.shape[1] == PREP.window
        for name in b.speakers:  # every window comes from a recording of its split
            kind, _, speaker = name.rpartition(":")
            splits = {mixing.split_of(e.speaker, e.kind, e.recording_id, e.source_uri, PREP)
                      for e in entries if e.speaker == speaker and e.kind == (kind or "speech")}
            assert split in splits
            if speaker.startswith("libri-"):  # other speakers are split whole: never in two splits
                assert splits == {split}
    val = bank.load(str(bank_dir), "val")
    assert "biden" in val.speakers and "biden" not in bank.load(str(bank_dir), "train").speakers
    meter = mixing.Loudness(16000)
    speech = np.flatnonzero(~val.is_noise)[:5]
    for w in speech:
        assert abs(meter(np.asarray(val.windows[w], np.float32)) - PREP.lufs_target) < 1.0


def test_sampler_mixes_sum_and_enrolls_the_same_speaker(bank_dir):
    from vsep.enroll_data import Sampler

    b = bank.load(str(bank_dir), "train")
    s = Sampler(b, 8000, TARGET, TrainConfig())
    rng = np.random.default_rng(0)
    absent = alone = 0
    for _ in range(80):
        mixture, enrollment, sources, speaker = s.example(rng)
        assert b.speakers[speaker] in s.bank.speakers and not b.speakers[speaker].startswith("noise:")
        np.testing.assert_allclose(mixture, sources[0] + sources[1], atol=1e-6)
        assert enrollment.shape == (b.windows.shape[1],)
        absent += not np.any(sources[0])
        alone += not np.any(sources[1])
    assert 0 < absent < 30  # the enrolled speaker is sometimes silent, as in a debate
    assert 0 < alone < 30  # and sometimes alone: a clean recording of them must be kept whole
    with pytest.raises(ValueError, match="no noise"):
        Sampler(bank.Bank(b.windows, b.speaker, np.zeros_like(b.is_noise), b.speakers, 16000), 8000, TARGET,
                TrainConfig())


def test_pairs_are_one_mixture_both_ways_and_enrollments_average_other_windows(bank_dir):
    """``pair_share``: a batch starts with pairs of one mixture, each voice enrolled and kept in turn; with
    precomputed embeddings an enrollment is the unit mean of 1-8 *other* windows of the voice."""
    from vsep.enroll_data import ENROLL_WINDOWS, Sampler

    b = bank.load(str(bank_dir), "train")
    onehot = np.eye(len(b.windows), dtype=np.float32)  # an embedding per window: which were averaged shows
    s = Sampler(b, 8000, TARGET, TrainConfig(pair_share=0.5), embeddings=onehot)
    rng = np.random.default_rng(1)
    counts = set()
    for _ in range(40):
        spk = s.targets[int(rng.integers(len(s.targets)))]
        w_t = int(rng.choice(s.windows_of[spk]))
        e = s.enrollment(rng, spk, w_t)
        used = np.flatnonzero(e)
        assert abs(np.linalg.norm(e) - 1.0) < 1e-5 and w_t not in used
        assert set(used) <= set(s.windows_of[spk].tolist())
        counts.add(len(used))
    assert min(counts) == 1 and 1 < max(counts) <= ENROLL_WINDOWS
    mixture, enrollment, sources, speaker = next(s.batches(8, seed=3))
    assert enrollment.shape == (8, len(b.windows))
    np.testing.assert_allclose(mixture, sources[:, 0] + sources[:, 1], atol=1e-5)
    for i in (0, 2):  # pairs: same mixture, voices swapped; what is left over (a noise or nothing) is shared
        np.testing.assert_array_equal(mixture[i], mixture[i + 1])
        assert speaker[i] != speaker[i + 1]
        np.testing.assert_allclose(sources[i, 1] - sources[i + 1, 0], sources[i + 1, 1] - sources[i, 0], atol=1e-5)
    assert not np.array_equal(mixture[4], mixture[5])  # then single examples


def _conditioned(cfg=TINY):
    from vsep.model import SeparationModel

    return SeparationModel(cfg).build_for()


def test_film_starts_as_the_identity_of_a_one_target_model():
    from dataclasses import replace

    from vsep.model import SeparationModel

    plain = SeparationModel(replace(TINY, embed_dim=0)).build_for()
    cond = _conditioned()
    for layer in plain.unet.layers:
        if layer.weights:
            cond.unet.get_layer(layer.name).set_weights(layer.get_weights())
    x = tf.random.normal([2, TINY.patch_samples()], seed=1) * 0.1
    emb = cond.embed(tf.random.normal([2, 8000], seed=2))
    np.testing.assert_allclose(cond(x, embedding=emb).numpy(), plain(x).numpy(), atol=1e-5)
    # and the embedding matters once FiLM has weights
    film = cond.unet.get_layer("enc0_film")
    film.set_weights([np.random.default_rng(7).normal(0, 0.5, w.shape).astype(np.float32)
                      for w in film.get_weights()])
    a, b = cond(x, embedding=emb).numpy(), cond(x, embedding=-emb).numpy()
    assert np.abs(a - b).max() > 1e-2 * np.abs(a).max()


def test_debate_mode_outputs_sum_to_the_input_and_one_voice_is_plain_separation():
    from vsep.inference import build_separate_fn

    model = _conditioned()
    film = model.unet.get_layer("enc1_film")
    film.set_weights([np.random.default_rng(0).normal(0, 0.5, w.shape).astype(np.float32)
                      for w in film.get_weights()])
    x = (np.random.default_rng(1).normal(0, 0.1, 9000)).astype(np.float32)
    embs = np.asarray(model.embed(tf.random.normal([2, 8000], seed=4)))
    out = build_separate_fn(model, embeddings=embs)(x).numpy()
    assert out.shape == (3, 9000)
    np.testing.assert_allclose(out.sum(axis=0), x, atol=2e-4)
    one = build_separate_fn(model, embeddings=embs[:1])(x).numpy()
    ref = build_separate_fn(model, embeddings=None)  # needs an embedding: refuses
    with pytest.raises(ValueError, match="needs an embedding"):
        ref(x)
    assert one.shape == (2, 9000) and not np.allclose(one[0], out[0], atol=1e-4)


def test_names_are_checked():
    assert enroll.parse_specs(["a=x.wav", "b"]) == [("a", "x.wav"), ("b", None)]
    for bad, msg in ((["rest=x.wav"], "'rest'"), (["a=x.wav", "a=y.wav"], "twice"), (["a b=x"], "a name is"),
                     (["a="], "no clip")):
        with pytest.raises(enroll.EnrollError, match=msg):
            enroll.parse_specs(bad)


@pytest.fixture(scope="module")
def trained(bank_dir, tmp_path_factory) -> Path:
    """A tiny conditioned model trained for a few steps on the bank, by ``vsep train``."""
    from vsep import train

    out = tmp_path_factory.mktemp("cond") / "model"
    args = ["--data", str(bank_dir), "--model-dir", str(out), "--target", TARGET, "--depth", "3", "--filters", "4",
            "--patch-frames", "16", "--frame-length", "256", "--frame-step", "64", "--fft-length", "256",
            "--embed-dim", "8", "--batch-size", "4", "--epochs", "2", "--steps-per-epoch", "3",
            "--validation-steps", "2", "--quiet"]
    assert train.main(args) == 0
    return out


def test_train_on_a_bank_stores_the_default_voice_and_resumes(trained, bank_dir):
    from vsep import model_io, train

    stored = model_io.read_embeddings(str(trained))
    assert list(stored) == [TARGET] and stored[TARGET].shape == (8,)
    assert abs(np.linalg.norm(stored[TARGET]) - 1.0) < 1e-4
    history = [json.loads(line) for line in (trained / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert train.main(["--data", str(bank_dir), "--model-dir", str(trained), "--epochs", "3", "--quiet"]) == 0
    assert len((trained / "history.jsonl").read_text().splitlines()) == 3


GE2E_ARGS = ["--target", TARGET, "--depth", "3", "--filters", "4", "--patch-frames", "16", "--frame-length", "256",
             "--frame-step", "64", "--fft-length", "256", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch",
             "2", "--validation-steps", "1", "--pair-share", "0.5", "--precomputed-embeddings", "--quiet"]


@pytest.fixture(scope="module")
def ge2e_trained(bank_dir, tmp_path_factory) -> Path:
    """A tiny GE2E-conditioned model trained for two steps on precomputed embeddings, by ``vsep train``."""
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import ge2e_weights

    from vsep import train

    tmp = tmp_path_factory.mktemp("ge2e")
    if not WHEEL.exists():
        pytest.skip(f"{WHEEL} is absent (make setup downloads it)")
    assert ge2e_weights.main([str(WHEEL), str(tmp / "ge2e.npz")]) == 0
    assert train.main(["--data", str(bank_dir), *GE2E_ARGS, "--model-dir", str(tmp / "model"), "--embed-dim", "256",
                       "--speaker-encoder", "ge2e", "--speaker-weights", str(tmp / "ge2e.npz")]) == 0
    return tmp / "model"


@needs_wheel
def test_ge2e_model_trains_on_embeddings_computed_once(ge2e_trained, bank_dir, tmp_path, capsys):
    """``--precomputed-embeddings``: the bank's windows are embedded once by the model's own frozen GE2E
    encoder (cached in the bank, the same as the saved model embeds them), then training runs on them."""
    from vsep import model_io, train

    cached = {p.name.split(".")[0]: np.load(p) for p in bank_dir.glob("*.ge2e-*.npy")}
    assert sorted(cached) == ["train", "val"]
    b = bank.load(str(bank_dir), "train")
    assert cached["train"].shape == (len(b.windows), 256)
    model = model_io.load(str(ge2e_trained))
    again = np.asarray(model.embed(np.asarray(b.windows[:3], np.float32)))
    np.testing.assert_allclose(cached["train"][:3], again, atol=1e-4)
    assert json.loads((ge2e_trained / "history.jsonl").read_text().splitlines()[0])["epoch"] == 1
    capsys.readouterr()
    assert train.main(["--data", str(bank_dir), *GE2E_ARGS, "--model-dir", str(tmp_path / "learned"),
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
    x = sf.read(_clip(tmp_path, "a", 10.0), dtype="float32")[0]
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
    x = enroll.read_clip("a", str(_clip(tmp_path, "a", 12.0)), 16000)  # read, at 16 kHz, its speech
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


def _clip(tmp_path: Path, name: str, seconds: float, silent: bool = False) -> Path:
    from realdata import DATA

    x, rate = sf.read(sorted((DATA / "speakers" / "biden").glob("*.wav"))[0], dtype="float32", always_2d=True)
    x = np.tile(x.mean(axis=1), 20)[: int(seconds * rate)]
    path = tmp_path / f"{name}.wav"
    sf.write(path, np.zeros_like(x) if silent else x, rate)
    return path


def test_separate_with_two_enrolled_voices_writes_each_and_the_rest(trained, tmp_path):
    from vsep import separate

    a, b = _clip(tmp_path, "a", 12.0), _clip(tmp_path, "b", 8.0)
    mix = tmp_path / "mix.wav"
    x = np.random.default_rng(0).normal(0, 0.05, (16000 * 3, 2)).astype(np.float32)
    sf.write(mix, x, 16000, subtype="FLOAT")
    rc = separate.main([str(mix), "--model", str(trained), "--enroll", f"alice={a}", "--enroll", f"bob={b}",
                        "--enroll", TARGET, "-o", str(tmp_path / "out"), "--no-progress"])
    assert rc == 0
    folder = tmp_path / "out" / "mix"
    outs = {n: sf.read(folder / f"{n}.wav", dtype="float32")[0] for n in ("alice", "bob", TARGET, "rest")}
    assert all(o.shape == x.shape for o in outs.values())
    np.testing.assert_allclose(sum(outs.values()), x, atol=3e-3)  # int16 files, four of them
    for n in ("alice", "bob", TARGET):
        assert (folder / f"{n}.timeline.json").exists() and (folder / f"{n}.timeline.csv").exists()


@pytest.mark.parametrize("case,msg", [("short", "s of speech; at least 3 s"), ("silent", "is silent"),
                                      ("missing", "cannot read"), ("stored", "stores no voice")])
def test_a_bad_enrollment_is_one_line_before_any_work(trained, tmp_path, capsys, case, msg):
    from vsep import separate

    clip = {"short": lambda: _clip(tmp_path, "s", 2.0), "silent": lambda: _clip(tmp_path, "z", 10.0, silent=True),
            "missing": lambda: tmp_path / "nope.wav", "stored": lambda: None}[case]()
    spec = "nobody" if clip is None else f"x={clip}"
    mix = tmp_path / "mix.wav"
    sf.write(mix, np.zeros(16000, np.float32), 16000)
    rc = separate.main([str(mix), "--model", str(trained), "--enroll", spec, "-o", str(tmp_path / "out"),
                        "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and msg in err[0]
    assert not (tmp_path / "out").exists()


def test_a_one_target_model_refuses_enrollment(tmp_path, capsys):
    from vsep import model_io, separate

    mix = tmp_path / "mix.wav"
    sf.write(mix, np.zeros(16000, np.float32), 16000)
    rc = separate.main([str(mix), "--model", str(model_io.BUNDLED), "--enroll", f"x={_clip(tmp_path, 'a', 10.0)}",
                        "-o", str(tmp_path / "o")])
    assert rc == 2 and "speaker-conditioned model" in capsys.readouterr().err


def test_separator_api_enrolls_waveforms(trained):
    import vsep

    x, rate = sf.read(sorted((Path(ROOT).parent / "shared" / "data" / "speakers" / "biden").glob("*.wav"))[0],
                      dtype="float32", always_2d=True)
    clip = np.tile(x.mean(axis=1), 20)[: 10 * rate]
    sep = vsep.Separator(str(trained), enroll={"joe": (clip, rate)})
    out = sep.separate(clip[: 2 * rate], rate)
    assert list(out) == ["joe", "rest"] and sep.target == "joe"
    assert out["joe"].shape == (2 * rate,)
    with pytest.raises(enroll.EnrollError, match="silent"):
        vsep.Separator(str(trained), enroll={"joe": (np.zeros(10 * rate, np.float32), rate)})


def test_onnx_graphs_of_a_conditioned_model_match_tensorflow(trained, tmp_path):
    """model.onnx (one voice and debate mode) and speaker.onnx against the Keras model."""
    from vsep import model_io, onnx_model, onnx_speaker, runtime
    from vsep.config import SeparateConfig
    from vsep.inference import chunk_geometry

    assert (trained / "model.onnx").exists() and (trained / "speaker.onnx").exists()  # written by vsep train
    model = model_io.load(str(trained))
    film = model.unet.get_layer("enc1_film")  # FiLM that does something, so that the check means something
    film.set_weights([np.random.default_rng(0).normal(0, 0.5, w.shape).astype(np.float32)
                      for w in film.get_weights()])
    onnx_model.write(model, tmp_path, weights=trained / "model.weights.h5")
    clip = np.random.default_rng(1).normal(0, 0.1, 20000).astype(np.float32)
    enc = runtime.onnx_session(str(trained))  # stamped with the weights: current
    assert enc is not None
    import onnxruntime as ort

    spk = ort.InferenceSession(str(tmp_path / onnx_speaker.SPEAKER_ONNX))
    emb_onnx = spk.run(["embedding"], {"frames": onnx_speaker.frame(clip, model.cfg)})[0]
    emb_tf = model.embed(clip[None]).numpy()
    np.testing.assert_allclose(emb_onnx, emb_tf, atol=1e-5)
    graph = ort.InferenceSession(str(tmp_path / onnx_model.ONNX))
    length, _ = chunk_geometry(model.cfg)
    rows = np.random.default_rng(2).normal(0, 0.1, (2, 2, length)).astype(np.float32)
    embs = np.concatenate([emb_tf, -emb_tf])
    for k, floor, wiener in ((1, 0.3, 0.0), (2, 0.0, 1.0)):
        out = graph.run(["sources"], {"rows": rows, "floor": np.array(floor, np.float32), "wiener": np.array(wiener, np.float32),
                                      "embeddings": embs[:k]})[0]
        ref = model.separate_speakers(rows.mean(axis=1), rows, embs[:k], wiener=bool(wiener), floor=floor).numpy()
        assert out.shape == ref.shape == (2, k + 1, 2, length)
        np.testing.assert_allclose(out, ref, atol=2e-5 * np.abs(ref).max())
    served = runtime.load(str(trained), SeparateConfig(runtime="onnx"), [(TARGET, None)])
    assert served.runtime == "onnx" and served.names == (TARGET, "rest")


def test_speaker_loss_trains_a_classifier_of_the_bank_voices(bank_dir, trained, tmp_path):
    from vsep import model_io, train

    out = tmp_path / "spk"
    assert train.main(["--data", str(bank_dir), "--model-dir", str(out), "--init-from", str(trained),
                       "--target", TARGET, "--depth", "3", "--filters", "4", "--patch-frames", "16",
                       "--frame-length", "256", "--frame-step", "64", "--fft-length", "256", "--embed-dim", "8",
                       "--speaker-loss", "0.1", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "3",
                       "--validation-steps", "2", "--quiet"]) == 0
    _, tcfg, _ = model_io.read_config(str(out))
    assert tcfg.speakers == len(bank.load(str(bank_dir), "train").speakers)
    row = json.loads((out / "history.jsonl").read_text().splitlines()[0])
    assert row["speaker_ce"] > 0
    model = model_io.load(str(out))  # the classifier's weights load with the rest
    assert model.classifier is not None and model.classifier.w.shape == (8, tcfg.speakers)


def test_savedmodel_of_a_conditioned_model_embeds_and_separates_anybody(trained, tmp_path):
    from vsep import export, model_io
    from vsep.config import SeparateConfig
    from vsep.inference import build_separate_fn

    out = export.export(str(trained), str(tmp_path / "sm"), SeparateConfig(precision="float32"))
    loaded = tf.saved_model.load(out)
    assert {"serving_default", "enrolled", "embed", "info"} <= set(loaded.signatures)
    model = model_io.load(str(trained))
    clip = np.random.default_rng(3).normal(0, 0.1, 24000).astype(np.float32)
    emb = loaded.signatures["embed"](clip=tf.constant(clip))["embedding"].numpy()
    np.testing.assert_allclose(emb, model.embed(clip[None]).numpy()[0], atol=1e-5)
    x = np.random.default_rng(4).normal(0, 0.1, 12000).astype(np.float32)
    got = loaded.signatures["enrolled"](waveform=tf.constant(x), embedding=tf.constant(emb))
    ref = build_separate_fn(model, shifts=2, target_floor=0.3, embeddings=emb[None])(x).numpy()
    np.testing.assert_allclose(got["target"].numpy(), ref[0], atol=1e-4)
    default = loaded.signatures["serving_default"](waveform=tf.constant(x))["target"].numpy()
    stored = model_io.read_embeddings(str(trained))[TARGET]
    ref = build_separate_fn(model, shifts=2, target_floor=0.3, embeddings=stored[None])(x).numpy()
    np.testing.assert_allclose(default, ref[0], atol=1e-4)



def test_enrolled_separation_with_onnx_never_imports_tensorflow(trained, tmp_path):
    """The fast start holds for a conditioned model too: speaker.onnx embeds the clip, model.onnx separates."""
    import subprocess
    import sys

    a = _clip(tmp_path, "a", 10.0)
    mix = tmp_path / "mix.wav"
    sf.write(mix, np.random.default_rng(0).normal(0, 0.05, 16000).astype(np.float32), 16000)
    code = ("import sys; from vsep import separate; rc = separate.main(sys.argv[1:]); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'; "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(mix), "--model", str(trained), "--enroll", f"a={a}",
                           "--enroll", TARGET, "--runtime", "onnx", "-o", str(tmp_path / "o"), "--no-progress"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "mix" / "a.wav").exists()
