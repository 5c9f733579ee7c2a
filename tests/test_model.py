"""The model's building blocks: STFT round trip on real speech, U-Net shapes, SI-SDR, config checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vsep.config import ModelConfig

from realdata import DATA, TARGET, needs_data

tf = pytest.importorskip("tensorflow")

# a tiny model: 2 cores are shared with other work
TINY = ModelConfig(depth=3, filters=4, patch_frames=16, frame_length=256, frame_step=64, fft_length=256)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """One real Trump recording at 16 kHz, float32 mono."""
    from vsep import audio

    path = sorted((DATA / "speakers" / TARGET).glob("quotes_*"))[0]
    x = audio.load(path.read_bytes(), 16000, path.name).astype(np.float32)
    assert len(x) > 3 * 16000 and np.max(np.abs(x)) > 0.05  # real speech, not silence
    return x


# ---------------------------------------------------------------- STFT


@needs_data
@pytest.mark.parametrize(
    "frame_length,frame_step,fft_length",
    [(1024, 256, 1024), (512, 128, 512), (400, 100, 512), (256, 64, 256)],
)
def test_stft_inverse_stft_reconstructs_real_speech(speech, frame_length, frame_step, fft_length):
    from vsep.stft import STFT, InverseSTFT, num_frames

    cfg = ModelConfig(frame_length=frame_length, frame_step=frame_step, fft_length=fft_length)
    cfg.validate()
    stft, istft = STFT.from_config_dataclass(cfg), InverseSTFT.from_config_dataclass(cfg)
    lengths = [len(speech), 16001, 12345, 999, frame_length + 1]
    assert any(n % frame_step for n in lengths)
    for n in lengths:
        wave = speech[None, :n]
        spec = stft(wave)
        assert spec.shape == (1, num_frames(cfg, n), fft_length // 2 + 1, 2)
        back = istft(spec, length=n).numpy()
        assert back.shape == (1, n)
        err = float(np.max(np.abs(back - wave)))
        assert err < 1e-4, (n, err)


@needs_data
def test_stft_batch_items_are_independent(speech):
    """Two different signals in one batch come back as themselves (no cross-talk)."""
    from vsep.stft import STFT, InverseSTFT

    cfg = ModelConfig(frame_length=512, frame_step=128, fft_length=512)
    n = 8011
    batch = np.stack([speech[:n], speech[-n:][::-1].copy()])
    back = InverseSTFT.from_config_dataclass(cfg)(STFT.from_config_dataclass(cfg)(batch), length=n).numpy()
    assert np.max(np.abs(back - batch)) < 1e-4


# ---------------------------------------------------------------- U-Net and SeparationModel


@pytest.mark.parametrize("frames", [1, 13, 37, 16])
def test_unet_any_frame_count(frames):
    from vsep.model import build_unet

    unet = build_unet(TINY)
    rng = np.random.default_rng(frames)
    x = np.log1p(np.abs(rng.normal(size=(2, frames, TINY.bins, 1)) * 3)).astype(np.float32)
    masks = unet(x, training=False).numpy()
    assert masks.shape == (2, frames, TINY.bins, 2)
    assert np.all(np.isfinite(masks)) and masks.min() >= 0.0 and masks.max() <= 1.0


@pytest.mark.parametrize("n", [4001, 3333, TINY.patch_samples() + 7])
def test_separator_output_length_equals_input_length(n):
    from vsep.model import SeparationModel

    model = SeparationModel(TINY)
    rng = np.random.default_rng(n)
    x = (0.1 * rng.normal(size=(2, n))).astype(np.float32)
    y = model(x).numpy()
    assert y.shape == (2, 2, n)
    assert np.all(np.isfinite(y))


def test_masks_sum_to_mixture_with_wiener():
    """Wiener masks sum to one, so target + rest reconstructs the mixture."""
    from vsep.model import SeparationModel

    model = SeparationModel(TINY)
    x = (0.1 * np.random.default_rng(1).normal(size=(1, 5003))).astype(np.float32)
    y = model(x, wiener=True).numpy()
    np.testing.assert_allclose(y.sum(axis=1), x, atol=1e-4)


def _params(cfg: ModelConfig) -> int:
    from vsep.model import build_unet

    return build_unet(cfg).count_params()


def test_architecture_settings_change_the_model():
    base = _params(TINY)
    assert _params(dataclasses.replace(TINY, depth=4)) > base
    assert _params(dataclasses.replace(TINY, filters=8)) > base
    assert _params(dataclasses.replace(TINY, kernel_size=3)) < base
    assert _params(dataclasses.replace(TINY, kernel_size=7)) > base
    # dropout has no weights: it changes layers and training-mode behaviour, not the count
    from vsep.model import build_unet

    with_dropout = build_unet(dataclasses.replace(TINY, dropout=0.5))
    without = build_unet(dataclasses.replace(TINY, dropout=0.0))
    assert with_dropout.count_params() == without.count_params() == base
    # dropout follows the first three decoder layers; the last (mask) layer has none
    assert sum("dropout" in layer.name for layer in with_dropout.layers) == 2  # depth 3
    deep = build_unet(dataclasses.replace(TINY, depth=5, dropout=0.5))
    assert sum("dropout" in layer.name for layer in deep.layers) == 3
    assert not any("dropout" in layer.name for layer in without.layers)
    x = np.random.default_rng(0).uniform(0, 2, size=(1, 16, TINY.bins, 1)).astype(np.float32)
    a, b = with_dropout(x, training=True).numpy(), with_dropout(x, training=True).numpy()
    assert not np.allclose(a, b)  # dropout active when training
    np.testing.assert_array_equal(with_dropout(x, training=False).numpy(), with_dropout(x, training=False).numpy())
    c, d = without(x, training=True).numpy(), without(x, training=True).numpy()
    np.testing.assert_allclose(c, d, atol=1e-6)  # no dropout: training mode is deterministic


def test_silent_input_gives_finite_silent_output():
    from vsep.model import SeparationModel

    model = SeparationModel(TINY)
    for wiener in (False, True):
        y = model(tf.zeros([2, 4321]), wiener=wiener).numpy()
        assert y.shape == (2, 2, 4321)
        assert np.all(np.isfinite(y)), wiener
        assert np.max(np.abs(y)) < 1e-6, wiener


def test_silent_patches_give_finite_losses():
    """Target-only / other-only patches (one silent source) and an all-silent patch train without NaN."""
    import keras

    from vsep.config import TrainConfig
    from vsep.model import SeparationModel

    n = TINY.patch_samples()
    rng = np.random.default_rng(3)
    speech = (0.1 * rng.normal(size=n)).astype(np.float32)
    zero = np.zeros(n, np.float32)
    sources = np.stack([np.stack([speech, zero]), np.stack([zero, speech]), np.stack([zero, zero])])
    mixture = sources.sum(axis=1)
    for loss in ("l1_mag", "l1_mag+sisdr", "sisdr", "snr"):
        model = SeparationModel(TINY, TrainConfig(loss=loss)).build_for()
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        logs = model.train_on_batch(mixture, sources, return_dict=True)
        assert np.isfinite(logs["loss"]), loss
        assert all(np.all(np.isfinite(w)) for w in model.get_weights()), loss
        val = model.test_on_batch(mixture, sources, return_dict=True)
        assert np.isfinite(val["loss"]), loss


@needs_data
def test_level_normalised_input_makes_the_masks_gain_invariant(speech):
    """With ``input_norm='mean'`` a recording 20 dB louder or 30 dB quieter gets the same masks; without, not."""
    from vsep.model import SeparationModel

    x = tf.constant(speech[None, : 4 * 16000])
    for norm, invariant in (("mean", True), ("none", False)):
        model = SeparationModel(dataclasses.replace(TINY, input_norm=norm)).build_for()
        masks = [model.masks(model.stft(x * g)).numpy() for g in (1.0, 10.0, 0.03)]
        diffs = [float(np.max(np.abs(m - masks[0]))) for m in masks[1:]]
        if invariant:
            assert max(diffs) < 1e-4, diffs
        else:
            assert min(diffs) > 1e-3, diffs


def test_sisdr_loss_rewards_silence_where_the_reference_is_silent():
    """On an other-only patch the SI-SDR loss falls as the target estimate gets quieter, down to -30 dB."""
    from vsep.model import silence_penalty

    rng = np.random.default_rng(0)
    mixture = tf.constant(rng.normal(size=(1, 8000)).astype(np.float32))
    values = [float(silence_penalty(mixture * g, mixture)[0]) for g in (1.0, 0.1, 0.01, 1e-4, 0.0)]
    assert values[0] == pytest.approx(0.0, abs=0.01)
    assert values[1] == pytest.approx(-2.0, abs=0.05)  # -20 dB -> -2
    assert values[0] > values[1] > values[2] > values[3]
    assert values[3] == pytest.approx(-3.0, abs=0.05) and values[4] == pytest.approx(-3.0, abs=0.01)  # floor


# ---------------------------------------------------------------- SI-SDR


def test_si_sdr_perfect_scaled_and_noisy():
    from vsep.model import si_sdr

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(3, 16000)).astype(np.float32)
    noise = rng.normal(size=(3, 16000)).astype(np.float32)
    perfect = si_sdr(ref, ref).numpy()
    assert perfect.shape == (3,)
    assert np.all(perfect > 60), perfect
    noisy = ref + 0.1 * noise
    s = si_sdr(ref, noisy).numpy()
    assert np.all(np.abs(s - 20.0) < 0.5), s  # noise energy 1/100 of the reference's
    for k in (0.01, 0.5, 7.0):
        np.testing.assert_allclose(si_sdr(ref, k * noisy).numpy(), s, atol=1e-3)
    np.testing.assert_allclose(si_sdr(ref, noisy + 0.3).numpy(), s, atol=1e-3)  # DC offset ignored
    worse = si_sdr(ref, ref + 0.5 * noise).numpy()
    assert np.all(worse < s - 10)
    pure_noise = si_sdr(ref, noise).numpy()
    assert np.all(pure_noise < -10), pure_noise
    assert np.all(si_sdr(ref, -ref).numpy() > 60)  # sign is a scale too


def test_snr_punishes_the_wrong_level_where_si_sdr_does_not():
    """A target estimate 20 dB too quiet: SI-SDR does not notice, SNR (and BSSEval's SDR) does."""
    from vsep.model import si_sdr, snr

    rng = np.random.default_rng(2)
    ref = tf.constant(rng.normal(size=(1, 16000)).astype(np.float32))
    good = ref + 0.1 * tf.constant(rng.normal(size=(1, 16000)).astype(np.float32))
    assert float(snr(ref, good)[0]) == pytest.approx(20.0, abs=0.5)
    assert float(si_sdr(ref, 0.1 * good)[0]) == pytest.approx(float(si_sdr(ref, good)[0]), abs=1e-3)
    assert float(snr(ref, 0.1 * good)[0]) < 1.0
    assert float(snr(ref, ref, max_db=30.0)[0]) == pytest.approx(30.0, abs=0.01)


def test_capped_si_sdr_saturates_and_keeps_gradients_bounded():
    """The training loss's cap: 30 dB at most, and no exploding gradient for a nearly perfect estimate."""
    from vsep.model import si_sdr

    rng = np.random.default_rng(1)
    ref = tf.constant(rng.normal(size=(1, 16000)).astype(np.float32))
    noise = tf.constant(rng.normal(size=(1, 16000)).astype(np.float32))
    assert float(si_sdr(ref, ref, max_db=30.0)[0]) == pytest.approx(30.0, abs=0.01)
    assert float(si_sdr(ref, ref + 0.3 * noise, max_db=30.0)[0]) == pytest.approx(
        float(si_sdr(ref, ref + 0.3 * noise)[0]), abs=0.1)  # far below the cap: unchanged

    def grad_norm(est, cap):
        with tf.GradientTape() as tape:
            tape.watch(est)
            value = si_sdr(ref, est, max_db=cap)
        return float(tf.norm(tape.gradient(value, est)))

    near = ref + 1e-4 * noise
    assert grad_norm(near, None) > 1000 * grad_norm(ref + 0.3 * noise, None)  # what the cap is for
    assert grad_norm(near, 30.0) < grad_norm(ref + 0.3 * noise, 30.0)


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    "changes,words",
    [
        ({"fft_length": 512, "frame_length": 1024}, "fft_length must be at least frame_length"),
        ({"fft_length": 1000, "frame_length": 1000, "frame_step": 250}, "power of two"),
        ({"frame_step": 0}, "frame_step"),
        ({"frame_step": 600}, "frame_step"),
        ({"depth": 0}, "depth"),
        ({"depth": 9, "patch_frames": 512}, "depth"),
        ({"filters": 0}, "filters"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"depth": 5, "patch_frames": 16}, "patch_frames"),
    ],
)
def test_model_config_rejects_impossible_settings(changes, words):
    cfg = dataclasses.replace(ModelConfig(), **changes)
    with pytest.raises(ValueError) as e:
        cfg.validate()
    msg = str(e.value)
    assert words in msg and "\n" not in msg


def test_model_config_accepts_defaults_and_tiny():
    ModelConfig().validate()
    TINY.validate()


def test_too_deep_for_the_frequency_axis_is_a_clear_error():
    """fft 256 has 128 bins: 2**8 does not divide them (validate alone lets it through)."""
    from vsep.model import SeparationModel

    cfg = dataclasses.replace(TINY, depth=8, patch_frames=256)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth"):
        SeparationModel(cfg)


def test_bfloat16_unet_shares_weights_and_stays_close_to_float32():
    """mixed_bfloat16: same weight file, float32 masks and waveforms, outputs within bfloat16 rounding."""
    from vsep.model import SeparationModel

    f32 = SeparationModel(TINY).build_for()
    bf16 = SeparationModel(TINY, precision="mixed_bfloat16").build_for()
    assert [w.shape for w in f32.get_weights()] == [w.shape for w in bf16.get_weights()]
    bf16.set_weights(f32.get_weights())
    assert all(v.dtype == "float32" for v in bf16.weights)
    assert any(layer.compute_dtype == "bfloat16" for layer in bf16.unet.layers)
    x = (0.1 * np.random.default_rng(3).normal(size=(2, 6000))).astype(np.float32)
    a, b = f32(x).numpy(), bf16(x).numpy()
    assert b.dtype == np.float32 and np.all(np.isfinite(b))
    rel = np.sqrt(np.mean((a - b) ** 2) / np.mean(a**2))
    assert 0 < rel < 0.05, rel  # bfloat16 has 8 bits of mantissa: close, not equal


@pytest.mark.parametrize("frames,levels", [(37, 1), (64, 1), (37, 2)])
def test_time_rnn_block_starts_as_the_unet_without_it_and_then_learns(frames, levels):
    """--time-rnn: the residual GRU's projection starts at zero, so a U-Net that gains it from another's
    weights computes the same masks (any frame count); once the projection moves, the masks do. With
    --time-rnn-levels 2 the same holds for the first decoder level's GRU, gained from a one-level model."""
    from vsep.model import build_unet

    start = dataclasses.replace(TINY, time_rnn=4) if levels > 1 else TINY
    plain, rnn = build_unet(start), build_unet(dataclasses.replace(TINY, time_rnn=4, time_rnn_levels=levels))
    for layer in plain.layers:
        if layer.weights:
            rnn.get_layer(layer.name).set_weights(layer.get_weights())
    x = np.log1p(np.abs(np.random.default_rng(frames).normal(size=(2, frames, TINY.bins, 1)) * 3)).astype("float32")
    a, b = plain(x, training=False).numpy(), rnn(x, training=False).numpy()
    assert b.shape == (2, frames, TINY.bins, 2) and rnn.count_params() > plain.count_params()
    np.testing.assert_array_equal(a, b)
    block = rnn.get_layer("bottleneck_rnn" if levels == 1 else f"dec{TINY.depth - 1}_rnn")
    kernel, bias = block.proj.get_weights()
    block.proj.set_weights([np.random.default_rng(1).normal(size=kernel.shape).astype("float32"), bias])
    assert np.abs(rnn(x, training=False).numpy() - a).max() > 1e-3


@pytest.mark.parametrize("changes", [{"time_rnn": 4, "time_rnn_levels": 0}, {"time_rnn": 4, "time_rnn_levels": 4},
                                     {"time_rnn": 0, "time_rnn_levels": 2}])
def test_time_rnn_levels_are_refused_outside_the_unet_or_without_a_gru(changes):
    with pytest.raises(ValueError, match="time_rnn_levels must be 1 to depth = 3"):
        dataclasses.replace(TINY, **changes).validate()


def test_deleted_share_counts_only_what_the_estimate_lacks():
    from vsep.model import deleted_share

    ref = tf.constant(np.abs(np.random.default_rng(0).standard_normal((3, 8, 5))).astype(np.float32))
    est = tf.stack([ref[0], ref[1] * 0.25, ref[2] * 3.0])  # whole, three quarters deleted, more than whole
    np.testing.assert_allclose(deleted_share(ref, est).numpy(), [0.0, 0.75, 0.0], atol=1e-6)
    np.testing.assert_allclose(deleted_share(ref, tf.zeros_like(ref)).numpy(), [1.0, 1.0, 1.0], atol=1e-6)


def test_keep_weight_adds_the_deleted_share_to_the_training_loss_only():
    from vsep.config import TrainConfig
    from vsep.model import SeparationModel

    n = TINY.patch_samples()
    rng = np.random.default_rng(1)
    target, other = (rng.standard_normal((2, n)) * 0.1).astype(np.float32), (rng.standard_normal((2, n)) * 0.1).astype(np.float32)
    mixture, sources = tf.constant(target + other), tf.constant(np.stack([target, other], axis=1))
    cfg = dataclasses.replace(TINY, dropout=0.0)  # training-mode passes without random dropout masks
    plain = SeparationModel(cfg, TrainConfig()).build_for(n)
    keep = SeparationModel(cfg, TrainConfig(keep_weight=0.5)).build_for(n)
    keep.set_weights(plain.get_weights())
    base, _ = plain._loss(mixture, sources, training=True)
    more, _ = keep._loss(mixture, sources, training=True)
    assert float(more) > float(base) + 0.01  # sigmoid masks of an untrained U-Net delete part of the target
    val_plain, _ = plain._loss(mixture, sources, training=False)
    val_keep, _ = keep._loss(mixture, sources, training=False)
    assert abs(float(val_keep) - float(val_plain)) < 1e-6  # validation losses stay comparable across recipes
