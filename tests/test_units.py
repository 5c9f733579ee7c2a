"""Pure functions of vsep: config, schema, windows, loudness, mixing, splits, audio, CLI."""

from __future__ import annotations

import argparse
import math
import subprocess
import sys

import numpy as np
import pytest

from vsep import audio, config, mixing, schema
from vsep.config import CollectConfig, PrepareConfig


def test_config_json_round_trip_and_versioning():
    cfg = PrepareConfig(target="someone", tir_db=(-3.0, 7.0), kind_weights=(1, 0, 0, 0, 0))
    back = config.loads(PrepareConfig, config.dumps(cfg))
    assert back == cfg and isinstance(back.tir_db, tuple)
    with pytest.raises(ValueError, match="expected PrepareConfig"):
        config.loads(PrepareConfig, config.dumps(CollectConfig()))
    with pytest.raises(ValueError, match="unknown PrepareConfig keys: nope"):
        config.from_dict(PrepareConfig, {"nope": 1})
    with pytest.raises(ValueError, match="newer"):
        config.loads(PrepareConfig, '{"config": "PrepareConfig", "version": 99}')


def test_options_declared_once_from_dataclass():
    p = argparse.ArgumentParser()
    config.add_arguments(p, PrepareConfig)
    ns = p.parse_args(["--window-s", "3", "--tir-db", "-1", "2", "--target", "biden"])
    cfg = config.from_namespace(PrepareConfig, ns, PrepareConfig(seed=5))
    assert (cfg.window_s, cfg.tir_db, cfg.target, cfg.seed) == (3.0, (-1.0, 2.0), "biden", 5)
    with pytest.raises(SystemExit):
        p.parse_args(["--loudness", "loud"])


@pytest.mark.parametrize("bad", [dict(window_s=0.2), dict(split_fractions=(0.5, 0.5, 0.5)), dict(tir_db=(5.0, -5.0))])
def test_impossible_prepare_settings_are_refused(bad):
    with pytest.raises(ValueError):
        PrepareConfig(**bad).validate()


def example(n: int = 1000) -> dict:
    rng = np.random.default_rng(0)
    ex = {k: rng.standard_normal(n).astype(np.float32) for k in ("target", "other", "noise")}
    ex["mixture"] = ex["target"] + ex["other"] + ex["noise"]
    ex.update({k: f"{k}-value" for k in schema.STRINGS})
    ex.update({k: float(i) - 2.5 for i, k in enumerate(schema.FLOATS)})
    ex.update(sample_rate=16000, num_samples=n)
    return ex


def test_schema_round_trip_through_tensorflow_and_python():
    import tensorflow as tf

    ex = example()
    blob = schema.encode(ex)
    parsed = schema.parse(tf.constant(blob))
    plain = schema.decode(blob)
    proto = tf.train.Example.FromString(blob)  # the real protobuf reads our bytes
    assert proto.features.feature["sample_rate"].int64_list.value[0] == 16000
    for k in schema.WAVEFORMS:
        np.testing.assert_array_equal(parsed[k].numpy(), ex[k])
        np.testing.assert_array_equal(plain[k], ex[k])
    for k in schema.STRINGS:
        assert parsed[k].numpy().decode() == plain[k] == ex[k]
    for k in schema.FLOATS:
        assert parsed[k].numpy() == pytest.approx(ex[k]) == plain[k]
    assert int(parsed["num_samples"]) == plain["num_samples"] == 1000
    neg = schema.decode(schema.encode({**ex, "sample_rate": -5}))
    assert neg["sample_rate"] == -5
    with pytest.raises(ValueError, match="shape"):
        schema.encode({**ex, "noise": np.zeros(3)})


def test_window_starts_cover_tails_and_short_clips():
    assert mixing.window_starts(100, 40, 40) == [0, 40]
    assert mixing.window_starts(100, 40, 40, min_window=20) == [0, 40, 60]
    assert mixing.window_starts(85, 40, 40, min_window=10) == [0, 40]
    assert mixing.window_starts(30, 40, 40, min_window=20) == [0]
    assert mixing.window_starts(10, 40, 40, min_window=20) == []
    assert len(mixing.take_window(np.ones(30, np.float32), 0, 40)) == 40


def test_loudness_normalisation_never_inf_or_nan():
    cfg = PrepareConfig()
    meter = mixing.Loudness(16000)
    assert meter(np.zeros(16000, np.float32)) == -math.inf
    assert meter(np.ones(1000, np.float32)) == -math.inf  # shorter than one 0.4 s block
    assert mixing.normalize(np.zeros(32000, np.float32), meter, cfg) is None
    assert mixing.normalize(np.full(32000, 1e-6, np.float32), meter, cfg) is None
    t = np.arange(32000) / 16000
    y, gain = mixing.normalize((0.01 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), meter, cfg)
    assert np.all(np.isfinite(y)) and abs(meter(y) - cfg.lufs_target) < 0.05 and gain > 0


def test_mix_scales_down_clipping_mixtures_with_their_sources():
    rng = np.random.default_rng(1)
    t, o, n = (rng.uniform(-0.8, 0.8, 4000).astype(np.float32) for _ in range(3))
    sources, scale_db = mixing.mix(t, o, n, (0.0, 0.0, 0.0), max_peak=0.99)
    assert scale_db < 0
    assert np.max(np.abs(sources["mixture"])) <= 0.99 + 1e-6
    np.testing.assert_array_equal(sources["mixture"], sources["target"] + sources["other"] + sources["noise"])
    np.testing.assert_allclose(sources["target"], t * 10 ** (scale_db / 20), rtol=1e-5)


def test_interference_gains_keep_total_ratio():
    plan = mixing.MixPlan(kind="both", tir_db=3.0, snr_db=6.0, reverb=False)
    g_o, g_n = mixing.interference_gains(plan)
    assert 10 * math.log10(10 ** (g_o / 10) + 10 ** (g_n / 10)) == pytest.approx(-3.0)
    assert g_o - g_n == pytest.approx(6.0)


def test_splits_are_stable_and_follow_fractions():
    keys = [f"rec{i}" for i in range(3000)]
    splits = [mixing.assign_split(k, (0.8, 0.1, 0.1)) for k in keys]
    assert splits == [mixing.assign_split(k, (0.8, 0.1, 0.1)) for k in keys]
    assert 0.76 < splits.count("train") / 3000 < 0.84
    assert mixing.rng_for(0, "a", 1).uniform() == mixing.rng_for(0, "a", 1).uniform()
    assert mixing.rng_for(0, "a", 1).uniform() != mixing.rng_for(1, "a", 1).uniform()


def test_trim_and_decode_errors():
    x = np.concatenate([np.zeros(8000), 0.5 * np.ones(8000), np.zeros(8000)]).astype(np.float32)
    y = audio.trim_silence(x, 16000)
    assert 8000 <= len(y) <= 8000 + 320
    assert len(audio.trim_silence(np.zeros(1000, np.float32), 16000)) == 0
    with pytest.raises(audio.AudioError, match="empty file"):
        audio.decode(b"", "x.wav")
    with pytest.raises(audio.AudioError, match="cannot decode"):
        audio.decode(b"not audio at all" * 10, "x.wav")


def test_cli_help_is_fast_and_lists_commands():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "vsep", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "collect" in out.stdout and "prepare" in out.stdout
    assert "tensorflow" not in out.stderr and "apache_beam" not in out.stderr  # no heavy imports
    bad = subprocess.run([sys.executable, "-m", "vsep", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_shift_voice_moves_pitch_and_shortens_a_higher_voice():
    rate = 16000
    tone = np.sin(2 * np.pi * 200.0 * np.arange(2 * rate) / rate).astype(np.float32)
    for percent in (15.0, -13.0):
        y = audio.shift_voice(tone, percent)
        assert abs(len(y) - len(tone) / (1 + percent / 100)) <= 2
        peak = np.fft.rfftfreq(len(y), 1 / rate)[np.argmax(np.abs(np.fft.rfft(y)))]
        assert abs(peak - 200.0 * (1 + percent / 100)) < 1.0, (percent, peak)
