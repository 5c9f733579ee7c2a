"""Training on real audio: the tf.data pipeline, ``vsep train``, kill-and-resume, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vsep import model_io
from vsep.config import ModelConfig, TrainConfig

from realdata import DATA, ROOT, TARGET, needs_data, small_dataset

pytestmark = needs_data
tf = pytest.importorskip("tensorflow")

# tiny model and short epochs: the machine has 2 cores shared with other work
TINY = ModelConfig(target=TARGET, depth=3, filters=4, patch_frames=16, frame_length=256, frame_step=64, fft_length=256)
MODEL_ARGS = [
    "--target", TARGET, "--depth", "3", "--filters", "4", "--patch-frames", "16",
    "--frame-length", "256", "--frame-step", "64", "--fft-length", "256",
]
TRAIN_ARGS = ["--batch-size", "4", "--validation-steps", "2", "--shuffle-buffer", "16", "--quiet"]
PREP_ARGS = [
    "--target", TARGET, "--window-s", "2.0", "--hop-s", "2.0", "--mixtures-per-window", "2",
    "--split-fractions", "0.5", "0.25", "0.25", "--num-shards", "2",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A tiny prepared data set (2 s windows) made from real recordings by collect + prepare."""
    return small_dataset(tmp_path_factory, PREP_ARGS)


@pytest.fixture(scope="module")
def manifest(data_dir) -> dict:
    from vsep.manifest import read_manifest

    return read_manifest(str(data_dir))


def _train_argv(data_dir: Path, model_dir: Path, epochs: int, steps: int) -> list[str]:
    return ["--data", str(data_dir), "--model-dir", str(model_dir), *MODEL_ARGS, *TRAIN_ARGS,
            "--epochs", str(epochs), "--steps-per-epoch", str(steps)]


def _history(model_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (model_dir / "history.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory) -> Path:
    """A model trained for 2 epochs of 3 steps through ``vsep train``."""
    from vsep import train

    model_dir = tmp_path_factory.mktemp("model") / "m"
    assert train.main(_train_argv(data_dir, model_dir, epochs=2, steps=3)) == 0
    return model_dir


# ---------------------------------------------------------------- tf.data


def test_training_batches_have_patch_shapes(manifest):
    from vsep.dataset import make_dataset

    n = TINY.patch_samples()
    tcfg = TrainConfig(batch_size=4, shuffle_buffer=16, remix_prob=1.0)
    ds = make_dataset(manifest["files"]["train"], TINY, tcfg, training=True)
    for mixture, sources in ds.take(3):
        assert mixture.shape == (4, n) and sources.shape == (4, 2, n)
        assert mixture.dtype == tf.float32 and sources.dtype == tf.float32
        m, s = mixture.numpy(), sources.numpy()
        assert np.all(np.isfinite(m)) and np.any(m)
        np.testing.assert_allclose(m, s.sum(axis=1), atol=1e-6)  # remix keeps mixture == target + rest
        assert np.max(np.abs(m)) <= 1.0


def test_evaluation_pass_is_exact_and_repeatable(manifest):
    from vsep.dataset import make_dataset

    tcfg = TrainConfig(batch_size=3)
    ds = make_dataset(manifest["files"]["val"], TINY, tcfg, training=False)
    first = [(m.numpy(), s.numpy()) for m, s in ds]
    second = [(m.numpy(), s.numpy()) for m, s in ds]
    assert sum(len(m) for m, _ in first) == manifest["counts"]["val"]  # one pass, last batch kept
    for (m, s), (m2, s2) in zip(first, second):
        np.testing.assert_array_equal(m, m2)  # centre crops, fixed order
        np.testing.assert_array_equal(s, s2)
        assert m.shape[1] == TINY.patch_samples()
        # prepare wrote mixture == target + other + noise; rest = other + noise
        np.testing.assert_allclose(m, s[:, 0] + s[:, 1], atol=1e-6)


def test_remix_keeps_sums_sets_ratio_and_never_clips(manifest):
    from vsep.dataset import make_dataset, remix

    ds = make_dataset(manifest["files"]["train"], TINY, TrainConfig(), training=False, batch_size=8)
    mixture, sources = next(iter(ds))
    # remix every example at a TIR in [-3, 3] dB, with a gain that would clip without the peak fix
    tcfg = TrainConfig(remix_prob=1.0, tir_db=(-3.0, 3.0), gain_db=(20.0, 20.0))
    m, s = (x.numpy() for x in remix(mixture, sources, tcfg, seed=1))
    np.testing.assert_allclose(m, s.sum(axis=1), atol=1e-6)
    assert np.max(np.abs(m)) <= 0.99 + 1e-6
    target, rest = sources.numpy()[:, 0], np.roll(sources.numpy()[:, 1], 1, axis=0)
    checked = 0
    for i in range(len(m)):
        e_t, e_r = np.sum(target[i] ** 2), np.sum(rest[i] ** 2)
        if e_t > 1e-6 and e_r > 1e-6:  # both present: interference is the next example's, at the drawn TIR
            tir = 10 * np.log10(np.sum(s[i, 0] ** 2) / np.sum(s[i, 1] ** 2))
            assert -3.01 <= tir <= 3.01, tir
            checked += 1
    assert checked > 0
    # no remix, no gain: the batch comes back unchanged
    same = remix(mixture, sources, TrainConfig(remix_prob=0.0, gain_db=(0.0, 0.0)), seed=1)
    np.testing.assert_allclose(same[0].numpy(), mixture.numpy(), atol=1e-6)
    np.testing.assert_allclose(same[1].numpy(), sources.numpy(), atol=1e-6)


def _band_db(x: np.ndarray, y: np.ndarray, bands: int = 32) -> np.ndarray:
    """Per-row energy change in dB of ``y`` against ``x`` in equal-width frequency bands: [B, bands]."""
    fx, fy = (np.abs(np.fft.rfft(a, axis=-1)) ** 2 for a in (x, y))
    idx = np.array_split(np.arange(fx.shape[-1]), bands)
    return np.stack([10 * np.log10(fy[:, i].sum(-1) / fx[:, i].sum(-1)) for i in idx], axis=-1)


def test_channel_eq_filters_smoothly_within_its_range_and_low_passes():
    from vsep.dataset import channel_eq

    x = np.random.default_rng(0).standard_normal((16, 32000)).astype(np.float32) * 0.1
    np.testing.assert_allclose(channel_eq(tf.constant(x), 0.0, 6.0, 1.0, seed=1).numpy(), x, atol=1e-6)
    eq = _band_db(x, channel_eq(tf.constant(x), 1.0, 6.0, 0.0, seed=1).numpy())
    # four cosines of amplitude 6, 3, 1.5, 0.75 dB: never beyond 11.25 dB, and every row changed
    assert np.all(np.abs(eq) < 11.5) and np.all(np.ptp(eq, axis=1) > 1.0)
    assert np.all(np.abs(np.diff(eq, axis=1)) < 4.0)  # smooth: no band jumps like a notch
    lp = _band_db(x, channel_eq(tf.constant(x), 1.0, 6.0, 1.0, seed=1).numpy())
    assert np.all(lp[:, -1] < -30)  # the top band is always above the cutoff (at most 95% of Nyquist)
    assert np.all(lp[:, 0] > -12)  # the lowest band always passes
    assert np.all(np.mean(lp < -30, axis=1) <= 0.66)  # cutoffs are at least 35% of Nyquist


def test_remix_with_channels_keeps_sums_and_filters_sources_independently(manifest):
    from vsep.dataset import make_dataset, remix

    ds = make_dataset(manifest["files"]["train"], TINY, TrainConfig(), training=False, batch_size=8)
    mixture, sources = next(iter(ds))
    tcfg = TrainConfig(remix_prob=0.0, gain_db=(0.0, 0.0), eq_prob=1.0, lowpass_prob=0.0)
    m, s = (x.numpy() for x in remix(mixture, sources, tcfg, seed=3))
    np.testing.assert_allclose(m, s.sum(axis=1), atol=1e-6)
    assert np.max(np.abs(m)) <= 0.99 + 1e-6
    src = sources.numpy()
    live = [i for i in range(len(m)) if min(np.sum(src[i, 0] ** 2), np.sum(src[i, 1] ** 2)) > 1e-3]
    assert live
    t = _band_db(src[live, 0] + 1e-4, s[live, 0] + 1e-4, 8)
    r = _band_db(src[live, 1] + 1e-4, s[live, 1] + 1e-4, 8)
    assert np.all(np.ptp(t, axis=1) > 0.5) and np.all(np.ptp(r, axis=1) > 0.5)  # both filtered
    assert np.all(np.max(np.abs(t - r), axis=1) > 0.5)  # each through its own channel


def test_impostor_interference_is_another_target_with_a_shifted_voice():
    from vsep.dataset import remix, shift_voice

    rate, n = 16000, 32000
    t = np.arange(n) / rate
    freqs = np.array([150.0, 190.0, 230.0, 270.0, 310.0, 350.0])
    tone = np.sin(2 * np.pi * freqs[:, None] * t).astype(np.float32) * 0.3
    shifted = shift_voice(tf.constant(tone[:2]), tf.constant([1.15, 1 / 1.15])).numpy()
    peak = np.fft.rfftfreq(n, 1 / rate)[np.argmax(np.abs(np.fft.rfft(shifted)), axis=-1)]
    np.testing.assert_allclose(peak, [150 * 1.15, 190 / 1.15], atol=1.0)
    noise = np.random.default_rng(0).standard_normal(tone.shape).astype(np.float32) * 0.05
    sources = tf.constant(np.stack([tone, noise], axis=1))
    tcfg = TrainConfig(remix_prob=1.0, impostor_prob=1.0, impostor_shift=(0.1, 0.2), tir_db=(0.0, 0.0),
                       gain_db=(0.0, 0.0))
    m, s = (x.numpy() for x in remix(tf.reduce_sum(sources, 1), sources, tcfg, seed=5))
    np.testing.assert_allclose(m, s.sum(axis=1), atol=1e-5)
    np.testing.assert_allclose(s[:, 0], tone, atol=1e-6)  # the target is untouched
    rest_peak = np.fft.rfftfreq(n, 1 / rate)[np.argmax(np.abs(np.fft.rfft(s[:, 1])), axis=-1)]
    ratio = rest_peak / np.roll(freqs, 2)  # the target two places back, resampled
    assert np.all(((ratio > 1.09) & (ratio < 1.21)) | ((ratio > 1 / 1.21) & (ratio < 1 / 1.09))), ratio
    tir = 10 * np.log10(np.sum(s[:, 0] ** 2, -1) / np.sum(s[:, 1] ** 2, -1))
    np.testing.assert_allclose(tir, 0.0, atol=0.05)


def test_shifted_interference_is_the_next_patch_with_a_new_voice():
    from vsep.dataset import remix

    rate, n = 16000, 32000
    freqs = np.array([150.0, 190.0, 230.0, 270.0, 310.0, 350.0])
    tone = np.sin(2 * np.pi * freqs[:, None] * np.arange(n) / rate).astype(np.float32) * 0.3
    target = np.random.default_rng(1).standard_normal(tone.shape).astype(np.float32) * 0.05
    sources = tf.constant(np.stack([target, tone], axis=1))
    tcfg = TrainConfig(remix_prob=1.0, other_shift_prob=1.0, other_shift=0.15, gain_db=(0.0, 0.0))
    m, s = (x.numpy() for x in remix(tf.reduce_sum(sources, 1), sources, tcfg, seed=2))
    np.testing.assert_allclose(s[:, 0], target, atol=1e-6)
    peak = np.fft.rfftfreq(n, 1 / rate)[np.argmax(np.abs(np.fft.rfft(s[:, 1])), axis=-1)]
    ratio = peak / np.roll(freqs, 1)
    assert np.all((ratio > 1 / 1.16) & (ratio < 1.16)) and np.any(np.abs(ratio - 1) > 0.01), ratio


# ---------------------------------------------------------------- vsep train


def test_train_writes_model_dir(trained):
    mcfg, tcfg, doc = model_io.read_config(str(trained))
    assert mcfg == TINY
    assert tcfg.epochs == 2 and tcfg.steps_per_epoch == 3 and tcfg.batch_size == 4
    assert doc["format"] == "vsep-model" and doc["command"][:2] == ["vsep", "train"]
    assert (trained / "model.weights.h5").is_file()
    hist = _history(trained)
    assert [h["epoch"] for h in hist] == [1, 2]
    assert [h["step"] for h in hist] == [3, 6]
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["val_loss"]) for h in hist)
    assert all(np.isfinite(h["val_si_sdri"]) and np.isfinite(h["val_snri"]) for h in hist)  # the learning curve
    state = json.loads((trained / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2
    assert state["best_val_loss"] == pytest.approx(min(h["val_loss"] for h in hist), abs=1e-4)  # history rounds
    model = model_io.load(str(trained))
    y = model(tf.zeros([1, 3001])).numpy()
    assert y.shape == (1, 2, 3001) and np.all(np.isfinite(y))


def test_rerun_of_a_finished_run_does_nothing_and_more_epochs_resume(trained, data_dir, tmp_path, capsys):
    from vsep import train

    model_dir = tmp_path / "m"
    shutil.copytree(trained, model_dir)
    assert train.main(_train_argv(data_dir, model_dir, epochs=2, steps=3)) == 0
    assert "already finished at epoch 2" in capsys.readouterr().out
    assert len(_history(model_dir)) == 2
    assert train.main(_train_argv(data_dir, model_dir, epochs=3, steps=3)) == 0
    assert "resuming from epoch 2" in capsys.readouterr().out
    assert [h["epoch"] for h in _history(model_dir)] == [1, 2, 3]


def test_kill_and_resume(data_dir, tmp_path):
    """SIGKILL a training process after its first checkpoint; the same command resumes and finishes.

    What is asserted about history.jsonl: the killed run logged epochs 1..k in
    order, the resumed run logs N+1..E where N is the epoch it says it resumes
    from (N >= 1, the last epoch whose state.json was written). A kill between
    the history line of epoch N+1 and that epoch's state.json leaves epoch
    N+1 logged twice; that is the only duplicate allowed.
    """
    epochs, steps = 6, 12
    model_dir = tmp_path / "m"
    cmd = [sys.executable, "-m", "vsep.train", *_train_argv(data_dir, model_dir, epochs, steps)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    state = model_dir / "checkpoints" / "state.json"
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while True:
            assert proc.poll() is None, "training ended before it could be killed:\n" + proc.stdout.read()
            assert time.time() - t0 < 120, "no checkpoint within 120 s"
            if state.exists() and json.loads(state.read_text())["epoch"] >= 1:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = json.loads(state.read_text())["epoch"]
    assert 1 <= killed_at < epochs
    before = [h["epoch"] for h in _history(model_dir)]
    assert before[:killed_at] == list(range(1, killed_at + 1))

    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    resumed = [int(line.split()[-1]) for line in done.stdout.splitlines() if "resuming from epoch" in line]
    assert resumed == [killed_at], done.stdout
    n = resumed[0]
    assert json.loads(state.read_text())["epoch"] == epochs
    after = [h["epoch"] for h in _history(model_dir)]
    assert after[: len(before)] == before and before in (list(range(1, n + 1)), list(range(1, n + 2)))
    assert after[len(before):] == list(range(n + 1, epochs + 1))
    assert sorted(set(after)) == list(range(1, epochs + 1))
    assert len(after) - len(set(after)) <= 1
    assert (model_dir / "model.weights.h5").is_file()
    assert time.time() - t0 < 240


# ---------------------------------------------------------------- bad input


def test_model_dir_of_another_format_version_is_refused(trained, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(trained, model_dir)
    doc = json.loads((model_dir / "config.json").read_text())
    doc["format_version"] = 99
    (model_dir / "config.json").write_text(json.dumps(doc))
    with pytest.raises(model_io.ModelDirError) as e:
        model_io.load(str(model_dir))
    msg = str(e.value)
    assert "\n" not in msg and "incompatible" in msg and "99" in msg and str(model_dir) in msg


def test_model_dir_from_before_input_norm_loads_unnormalised(trained, tmp_path):
    """A config written before ``input_norm`` existed means the U-Net saw raw magnitudes."""
    model_dir = tmp_path / "m"
    shutil.copytree(trained, model_dir)
    doc = json.loads((model_dir / "config.json").read_text())
    assert doc["model"].pop("input_norm") == "mean"  # what a new model records
    (model_dir / "config.json").write_text(json.dumps(doc))
    assert model_io.read_config(str(model_dir))[0].input_norm == "none"
    assert model_io.load(str(model_dir)).cfg.input_norm == "none"


def test_missing_or_empty_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(model_io.ModelDirError, match="does not exist"):
        model_io.load(str(tmp_path / "nowhere"))
    with pytest.raises(model_io.ModelDirError, match="no config.json"):
        model_io.load(str(tmp_path))


def test_weights_that_do_not_fit_the_config_are_refused(trained, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(trained, model_dir)
    doc = json.loads((model_dir / "config.json").read_text())
    doc["model"]["filters"] = 8
    (model_dir / "config.json").write_text(json.dumps(doc))
    with pytest.raises(model_io.ModelDirError) as e:
        model_io.load(str(model_dir))
    assert "weights do not fit" in str(e.value) and "\n" not in str(e.value)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("vsep train: error: ")
    return err[0]


def test_init_from_starts_a_new_run_at_another_models_weights(trained, data_dir, tmp_path, capsys):
    """Fine-tuning: ``--init-from`` loads the weights before the first step; another architecture exits 2."""
    from vsep import train

    start = model_io.load(str(trained)).get_weights()
    model_dir = tmp_path / "ft"
    argv = [*_train_argv(data_dir, model_dir, 1, 1), "--init-from", str(trained), "--loss", "snr",
            "--learning-rate", "1e-9"]  # fmt: skip
    assert train.main(argv) == 0
    assert "starting from the weights of" in capsys.readouterr().out
    tuned = model_io.load(str(model_dir)).get_weights()
    # one step at a learning rate of 1e-9 leaves the weights where --init-from put them
    # (batch-norm statistics move with the step's batch, so only the trainable kernels are compared)
    kernels = [i for i, w in enumerate(start) if w.ndim == 4]
    assert kernels and all(np.allclose(start[i], tuned[i], atol=1e-6) for i in kernels)
    rc = train.main([*_train_argv(data_dir, tmp_path / "ft2", 1, 1), "--init-from", str(trained), "--filters", "2"])
    assert rc == 2 and "model config differs" in _one_line_error(capsys)


def test_init_from_gains_a_time_rnn_served_by_onnx_and_tensorflow(trained, data_dir, tmp_path, capsys):
    """``--time-rnn`` on top of a model without one: its layers start at that model's weights, the new
    block at zero (same masks); training writes its ONNX graph (the GRU as ONNX's GRU op), which serves it,
    and TensorFlow serves the same within float tolerance. The way back (dropping the block) is refused, and
    so is dropping a level (``--time-rnn-levels``), while gaining one is allowed."""
    from vsep import train
    from vsep.api import Separator

    model_dir = tmp_path / "rnn"
    argv = [*_train_argv(data_dir, model_dir, 1, 1), "--init-from", str(trained), "--time-rnn", "4",
            "--learning-rate", "1e-9"]  # fmt: skip
    assert train.main(argv) == 0
    out = capsys.readouterr()
    assert "starting from the weights of" in out.out and "model.onnx not written" not in out.err
    tuned, start = model_io.load(str(model_dir)), model_io.load(str(trained))
    assert tuned.cfg.time_rnn == 4 and (model_dir / "model.onnx").exists()
    for layer in start.unet.layers:
        for w, v in zip(layer.get_weights(), tuned.unet.get_layer(layer.name).get_weights()):
            if w.ndim == 4:  # kernels (batch-norm statistics move with the step's batch)
                np.testing.assert_allclose(w, v, atol=1e-6)
    x = (0.1 * np.random.default_rng(0).normal(size=16000)).astype(np.float32)
    outs = {}
    for runtime in ("onnx", "tf"):
        sep = Separator(str(model_dir), runtime=runtime, precision="float32")
        assert sep.runtime.startswith(runtime)
        outs[runtime] = sep.separate(x, 16000)
        assert list(outs[runtime]) == [TARGET, "rest"]
        assert all(y.shape == x.shape and np.all(np.isfinite(y)) for y in outs[runtime].values())
    np.testing.assert_allclose(outs["onnx"][TARGET], outs["tf"][TARGET], atol=1e-3)
    rc = train.main([*_train_argv(data_dir, tmp_path / "back", 1, 1), "--init-from", str(model_dir)])
    assert rc == 2 and "model config differs" in _one_line_error(capsys)
    two = tmp_path / "two"
    assert train.main([*_train_argv(data_dir, two, 1, 1), "--init-from", str(model_dir), "--time-rnn", "4",
                       "--time-rnn-levels", "2", "--learning-rate", "1e-9"]) == 0
    assert model_io.load(str(two)).unet.get_layer("dec2_rnn").units == 4  # depth 3: the decoder's first level
    capsys.readouterr()
    rc = train.main([*_train_argv(data_dir, tmp_path / "one", 1, 1), "--init-from", str(two), "--time-rnn", "4"])
    assert rc == 2 and "model config differs" in _one_line_error(capsys)


def test_data_of_another_sample_rate_exits_2(data_dir, tmp_path, capsys):
    from vsep import train

    model_dir = tmp_path / "m"
    rc = train.main([*_train_argv(data_dir, model_dir, 1, 1), "--sample-rate", "8000"])
    assert rc == 2
    assert "sample rate 16000 Hz differs from the model's 8000 Hz" in _one_line_error(capsys)
    assert not model_dir.exists()


def test_other_architecture_in_existing_model_dir_exits_2(trained, data_dir, tmp_path, capsys):
    from vsep import train

    model_dir = tmp_path / "m"
    shutil.copytree(trained, model_dir)
    before = (model_dir / "config.json").read_text()
    rc = train.main([*_train_argv(data_dir, model_dir, 3, 1), "--filters", "8"])
    assert rc == 2
    assert "another architecture" in _one_line_error(capsys)
    assert (model_dir / "config.json").read_text() == before
    assert len(_history(model_dir)) == 2


def test_other_format_version_in_model_dir_exits_2(trained, data_dir, tmp_path, capsys):
    from vsep import train

    model_dir = tmp_path / "m"
    shutil.copytree(trained, model_dir)
    doc = json.loads((model_dir / "config.json").read_text())
    doc["format_version"] = 0
    (model_dir / "config.json").write_text(json.dumps(doc))
    assert train.main(_train_argv(data_dir, model_dir, 3, 1)) == 2
    assert "incompatible vsep" in _one_line_error(capsys)


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--target", "biden"], "differs from model target"),
        (["--patch-frames", "1024"], "shorter than a model patch"),
        (["--fft-length", "1000"], "power of two"),
        (["--depth", "8", "--patch-frames", "256"], "divisible by 2**depth"),  # 128 bins; passes validate()
    ],
)
def test_bad_settings_exit_2_and_leave_no_model_dir(data_dir, tmp_path, capsys, extra, words):
    from vsep import train

    model_dir = tmp_path / "m"
    assert train.main([*_train_argv(data_dir, model_dir, 1, 1), *extra]) == 2
    assert words in _one_line_error(capsys)
    assert not (model_dir / "config.json").exists()


def test_missing_data_exits_2(tmp_path, capsys):
    from vsep import train

    assert train.main(_train_argv(tmp_path / "nodata", tmp_path / "m", 1, 1)) == 2
    assert "no prepared data set" in _one_line_error(capsys)


def test_resume_after_kill_between_checkpoint_and_state_file(trained, tmp_path):
    """Epoch 2's checkpoint is written, its state.json is not (a kill in between).

    Resuming restores epoch 1's checkpoint (optimizer at 3 steps), not the newer
    one, so weights, optimizer and epoch agree.
    """
    import keras

    from vsep.model import SeparationModel
    from vsep.train import TrainingState

    model_dir = tmp_path / "m"
    shutil.copytree(trained, model_dir)
    assert (model_dir / "checkpoints" / "ckpt-2.index").exists()
    first = _history(model_dir)[0]
    state = {"epoch": 1, "best_val_loss": first["val_loss"], "wait": 0, "stopped": False, "best_epoch": 1}
    (model_dir / "checkpoints" / "state.json").write_text(json.dumps(state))
    mcfg, tcfg, _ = model_io.read_config(str(model_dir))
    model = SeparationModel(mcfg, tcfg).build_for()
    model.compile(optimizer=keras.optimizers.Adam(tcfg.learning_rate))
    model.optimizer.build(model.trainable_variables)
    assert TrainingState(str(model_dir), model, tcfg).restore() == 1
    assert int(model.optimizer.iterations.numpy()) == 1 * tcfg.steps_per_epoch
    # and with the state of epoch 2 it is epoch 2's checkpoint
    model2 = SeparationModel(mcfg, tcfg).build_for()
    model2.compile(optimizer=keras.optimizers.Adam(tcfg.learning_rate))
    model2.optimizer.build(model2.trainable_variables)
    shutil.copy(trained / "checkpoints" / "state.json", model_dir / "checkpoints" / "state.json")
    assert TrainingState(str(model_dir), model2, tcfg).restore() == 2
    assert int(model2.optimizer.iterations.numpy()) == 2 * tcfg.steps_per_epoch


# ---------------------------------------------------------------- --val-folder


def _scored_folder(dest: Path, seconds: float) -> Path:
    """Two scored examples from real recordings: ``<name>/mixture.wav`` = ``trump.wav`` + ``rest.wav``."""
    import soundfile as sf

    from vsep import audio

    trump = sorted((DATA / "speakers" / TARGET).glob("resemblyzer_*"))[:2]
    other = sorted((DATA / "speakers").glob("libri-*/*"))[:2]
    n = int(seconds * 16000)
    for i, (t, o) in enumerate(zip(trump, other)):
        x, y = (audio.load(p.read_bytes(), 16000, str(p))[:n] for p in (t, o))
        ex = dest / f"voices-{i:03d}"
        ex.mkdir(parents=True)
        for name, wave in ((f"{TARGET}.wav", x), ("rest.wav", y), ("mixture.wav", x + y)):
            sf.write(ex / name, wave, 16000, subtype="FLOAT")
    return dest


def test_val_folder_is_what_validation_scores(data_dir, tmp_path):
    from vsep import train
    from vsep.dataset import folder_dataset, folder_patches

    folder = _scored_folder(tmp_path / "xval", seconds=1.0)
    mix, src = folder_patches(str(folder), TINY)
    n = TINY.patch_samples()
    assert mix.shape == (2 * (16000 // n), n) and src.shape == (len(mix), 2, n)
    np.testing.assert_allclose(mix, src.sum(axis=1), atol=1e-6)  # consecutive patches of each example
    model_dir = tmp_path / "m"
    assert train.main([*_train_argv(data_dir, model_dir, 1, 2), "--val-folder", str(folder)]) == 0
    _, _, doc = model_io.read_config(str(model_dir))
    assert doc["val_folder"] == str(folder)
    val_loss = _history(model_dir)[-1]["val_loss"]
    model = model_io.load(str(model_dir))
    model.compile()
    ds, steps = folder_dataset(str(folder), TINY, 4)
    assert steps == -(-len(mix) // 4)
    assert model.evaluate(ds, verbose=0, return_dict=True)["loss"] == pytest.approx(val_loss, abs=1e-3)


@pytest.mark.parametrize("seconds", [None, 0.01])  # no examples; examples shorter than one patch
def test_unusable_val_folder_exits_2_before_writing(data_dir, tmp_path, capsys, seconds):
    from vsep import train

    folder = tmp_path / "xval"
    folder.mkdir()
    if seconds:
        _scored_folder(folder, seconds)
    model_dir = tmp_path / "m"
    assert train.main([*_train_argv(data_dir, model_dir, 1, 1), "--val-folder", str(folder)]) == 2
    msg = _one_line_error(capsys)
    assert ("no <name>/mixture.wav found" if seconds is None else "as long as one model patch") in msg
    assert not model_dir.exists()
