"""Any speaker from an enrollment clip: the speaker bank, on-the-fly mixing, the conditioned model,
debate mode, and the bad enrollments that must stop with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vsep import bank, enroll, lake, mixing, timeline
from vsep.config import ModelConfig, PrepareConfig, TrainConfig

from realdata import ROOT, TARGET, biden_clip, needs_data

pytestmark = needs_data
tf = pytest.importorskip("tensorflow")

TINY = ModelConfig(target=TARGET, depth=3, filters=4, patch_frames=16, frame_length=256, frame_step=64,
                   fft_length=256, embed_dim=8)
PREP = PrepareConfig(target=TARGET, window_s=2.0, split_fractions=(1.0, 0.0, 0.0),
                     val_holdout=("biden/*", "libri-1034/*", "babble/*"), test_holdout=("libri-11*/*",))


@pytest.fixture(scope="module")
def lake_dir(enroll_lake) -> Path:
    return enroll_lake


@pytest.fixture(scope="module")
def bank_dir(enroll_bank) -> Path:
    return enroll_bank


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


def test_similar_pairs_draw_the_second_voice_among_the_nearest_other_persons():
    """``similar_pairs``: the second voice of a pair is one of the voices nearest the first by mean embedding,
    never the first voice's own pitch-shifted copy; validation pairs stay drawn at random."""
    from vsep.enroll_data import Sampler, nearest_voices

    names = ["a", "a@+12%", "b", "c", "d", "noise:n"]
    speaker = np.repeat(np.arange(6), 2).astype(np.int32)
    windows = np.random.default_rng(0).normal(0, 0.1, (12, 8000)).astype(np.float16)
    b = bank.Bank(windows, speaker, speaker == 5, names, 16000)
    direction = {"a": [1, 0, 0], "a@+12%": [1, 0.01, 0], "b": [0.9, 0.4, 0], "c": [0, 1, 0], "d": [0, 0, 1],
                 "noise:n": [0, 0, 1]}
    emb = np.array([direction[names[s]] for s in speaker], np.float32)
    near = nearest_voices(emb, b, [0, 1, 2, 3, 4], 1)
    assert near[0].tolist() == [2] and near[1].tolist() == [2] and near[3].tolist() == [2]  # not a's copy
    cfg = TrainConfig(pair_share=1.0, similar_pairs=1.0, precomputed_embeddings=True, target_share=0.0)
    s = Sampler(b, 4000, TARGET, cfg, "train", emb)
    rng = np.random.default_rng(2)
    drawn = {(p[0][3], p[1][3]) for p in (s.pair(rng) for _ in range(200))}
    assert drawn and all(second in s.nearest[first] for first, second in drawn)
    assert {(0, 2), (2, 0)} <= drawn or {(0, 2), (1, 2)} <= drawn
    assert Sampler(b, 4000, TARGET, cfg, "val", emb).nearest is None
    with pytest.raises(ValueError, match="needs precomputed_embeddings"):
        from vsep.enroll_data import make_datasets

        make_datasets("unused", TINY, TrainConfig(similar_pairs=0.5))


def test_embed_noise_moves_training_enrollments_to_nearby_rectified_unit_embeddings():
    """``embed_noise``: a training enrollment is its clean unit mean plus noise, rectified and made unit length
    again, so its cosine to the clean one falls below 1 but stays high at 0.03; validation's stay clean."""
    from vsep.enroll_data import Sampler, make_datasets

    speaker = np.repeat(np.arange(3), 4).astype(np.int32)
    windows = np.random.default_rng(0).normal(0, 0.1, (12, 8000)).astype(np.float16)
    b = bank.Bank(windows, speaker, speaker == 2, ["a", "b", "noise:n"], 16000)
    emb = np.abs(np.random.default_rng(1).normal(size=(12, 256))).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    clean_mean = emb[1:4].mean(axis=0)
    clean_mean /= np.linalg.norm(clean_mean)
    cos = {}
    for split, std in (("train", 0.03), ("val", 0.03), ("train", 0.0)):
        s = Sampler(b, 4000, TARGET, TrainConfig(embed_noise=std, precomputed_embeddings=True), split, emb)
        rng = np.random.default_rng(3)
        draws = [s.enrollment(rng, 0, 0) for _ in range(50)]
        assert all(np.all(e >= 0) and abs(np.linalg.norm(e) - 1) < 1e-5 for e in draws)
        cos[split, std] = float(np.mean([e @ clean_mean for e in draws]))
    assert 0.85 < cos["train", 0.03] < cos["train", 0.0] - 0.03, cos
    assert abs(cos["val", 0.03] - cos["train", 0.0]) < 1e-6, cos  # validation: the same draws, no noise
    with pytest.raises(ValueError, match="embed_noise"):
        make_datasets("unused", TINY, TrainConfig(embed_noise=0.03))


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


def test_separate_with_two_enrolled_voices_writes_each_and_the_rest(trained, tmp_path):
    from vsep import separate

    a, b = biden_clip(tmp_path, "a", 12.0), biden_clip(tmp_path, "b", 8.0)
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
        assert json.loads((folder / f"{n}.timeline.json").read_text())["threshold"] == timeline.DEBATE_THRESHOLD
    assert separate.main([str(mix), "--model", str(trained), "--enroll", f"alice={a}", "-o", str(tmp_path / "one"),
                          "--no-progress"]) == 0  # one enrolled voice: its own detector
    doc = json.loads((tmp_path / "one" / "mix" / "alice.timeline.json").read_text())
    assert doc["threshold"] == timeline.ENROLLED_THRESHOLD != timeline.THRESHOLD


@pytest.mark.parametrize("case,msg", [("short", "s of speech; at least 3 s"), ("silent", "is silent"),
                                      ("missing", "cannot read"), ("stored", "stores no voice")])
def test_a_bad_enrollment_is_one_line_before_any_work(trained, tmp_path, capsys, case, msg):
    from vsep import separate

    clip = {"short": lambda: biden_clip(tmp_path, "s", 2.0), "silent": lambda: biden_clip(tmp_path, "z", 10.0, silent=True),
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
    rc = separate.main([str(mix), "--model", str(model_io.BUNDLED), "--enroll", f"x={biden_clip(tmp_path, 'a', 10.0)}",
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

    a = biden_clip(tmp_path, "a", 10.0)
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


def test_decoder_film_starts_as_the_identity_and_its_graph_matches_keras(tmp_path):
    """``--film-decoder``: a conditioned model warm-started without decoder FiLM begins as that model; once the
    decoder's FiLM has weights, the embedding steers it, and model.onnx computes what Keras computes."""
    from dataclasses import replace

    from vsep import model_io, onnx_model
    from vsep.config import TrainConfig
    from vsep.inference import chunk_geometry

    cfg = replace(TINY, film_decoder=True)
    base, model = _conditioned(), _conditioned(cfg)
    for layer in base.unet.layers:
        if layer.weights:
            model.unet.get_layer(layer.name).set_weights(layer.get_weights())
    model.encoder.set_weights(base.encoder.get_weights())
    x = tf.random.normal([2, TINY.patch_samples()], seed=1) * 0.1
    emb = base.embed(tf.random.normal([2, 8000], seed=2))
    np.testing.assert_allclose(model(x, embedding=emb).numpy(), base(x, embedding=emb).numpy(), atol=1e-5)
    film = model.unet.get_layer("dec1_film")
    film.set_weights([np.random.default_rng(5).normal(0, 0.5, w.shape).astype(np.float32)
                      for w in film.get_weights()])
    assert np.abs(model(x, embedding=emb).numpy() - base(x, embedding=emb).numpy()).max() > 1e-3
    model_io.save_weights(model, str(tmp_path))
    model_io.write_config(str(tmp_path), model_io.config_document(cfg, TrainConfig()))
    onnx_model.write(model, tmp_path)
    import onnxruntime as ort

    graph = ort.InferenceSession(str(tmp_path / onnx_model.ONNX))
    length, _ = chunk_geometry(cfg)
    rows = np.random.default_rng(2).normal(0, 0.1, (2, 2, length)).astype(np.float32)
    embs = np.concatenate([emb.numpy()[:1], -emb.numpy()[:1]])
    for k, floor, wiener in ((1, 0.3, 0.0), (2, 0.0, 1.0)):  # one voice; debate mode as vsep.runtime serves it
        out = graph.run(["sources"], {"rows": rows, "floor": np.array(floor, np.float32),
                                      "wiener": np.array(wiener, np.float32), "embeddings": embs[:k]})[0]
        ref = model.separate_speakers(rows.mean(axis=1), rows, embs[:k], wiener=bool(wiener), floor=floor).numpy()
        np.testing.assert_allclose(out, ref, atol=2e-5 * np.abs(ref).max())


def test_decoder_film_needs_a_conditioned_model():
    from dataclasses import replace

    with pytest.raises(ValueError, match="film_decoder needs a conditioned model"):
        replace(TINY, embed_dim=0, film_decoder=True).validate()
