"""The GPU path (``tools/gpu_pack.py``, ``tools/gpu_train.py``, ``tools/gpu_import.py``) against the TF model.

``gpu_train`` recomputes, for JAX, what :class:`vsep.model.SeparationModel` computes around the U-Net;
its array functions take ``xp``, so here they run on NumPy and must equal the TensorFlow layers. (The
JAX training loop itself needs JAX, which this project's environment does not install; the U-Net is
the one :func:`vsep.unet.build_unet` builds for both backends.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vsep import model_io
from vsep.config import ModelConfig, TrainConfig

from realdata import ROOT, TARGET, needs_data, small_dataset

tf = pytest.importorskip("tensorflow")
sys.path.insert(0, str(ROOT / "tools"))
import gpu_train  # noqa: E402

CFG = ModelConfig(target="someone", depth=3, filters=4, frame_length=256, frame_step=64, fft_length=256,
                  patch_frames=32, chunk_frames=64)


def _model(cfg: ModelConfig = CFG, seed: int = 0):
    from vsep.model import SeparationModel

    model = SeparationModel(cfg).build_for()
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.standard_normal(w.shape) * 0.2 + (1.0 if "variance" in v.path else 0.0)).astype(w.dtype)
                       for w, v in zip(model.get_weights(), model.weights)])
    return model


@pytest.mark.parametrize("cfg", [CFG, ModelConfig(target="someone")], ids=["tiny", "default"])
def test_stft_features_istft_and_loss_equal_the_models(cfg):
    model = _model(cfg)
    rng = np.random.default_rng(1)
    n = cfg.patch_samples()
    x = (rng.standard_normal((2, n)) * 0.1).astype(np.float32)
    sources = np.stack([x * 0.7, x * 0.3], axis=1)
    sources[1, 1] = 0.0  # a target-only example: the silence term of the loss
    x[1] = sources[1, 0]
    spec = model.stft(x).numpy()
    mine = gpu_train.stft(x.astype(np.float64), cfg)
    np.testing.assert_allclose(mine, spec[..., 0] + 1j * spec[..., 1], atol=2e-5 * np.abs(mine).max())
    np.testing.assert_allclose(gpu_train.features(mine, cfg), model._log_mag(spec).numpy()[..., None], atol=1e-5)
    np.testing.assert_allclose(gpu_train.istft(mine, n, cfg), x, atol=1e-5)
    loss, _ = model._loss(tf.constant(x), tf.constant(sources), training=False)
    masks = model.masks(spec).numpy()
    est = np.stack([gpu_train.istft(mine * masks[..., k], n, cfg) for k in range(2)], axis=1)
    assert abs(gpu_train.snr_loss(x, sources, est) - float(loss)) < 1e-4
    assert abs(float(loss)) > 0.05  # not trivially zero


def _model_dir(tmp_path: Path, cfg: ModelConfig = CFG, seed: int = 0) -> Path:
    d = tmp_path / f"model{seed}"
    d.mkdir()
    model_io.save_weights(_model(cfg, seed), str(d))
    model_io.write_config(str(d), model_io.config_document(cfg, TrainConfig()))
    return d


def _tool(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / name), *args], capture_output=True, text=True,
                          timeout=300)


def test_export_then_import_gives_the_same_unet(tmp_path):
    base, other = _model_dir(tmp_path, seed=0), _model_dir(tmp_path, seed=1)
    npz = tmp_path / "unet.npz"
    assert _tool("gpu_import.py", "--export", str(other), str(npz)).returncode == 0
    log = tmp_path / "log.json"
    log.write_text(json.dumps({"log": [{"step": 3, "loss": -1.0}]}))
    out = tmp_path / "imported"
    proc = _tool("gpu_import.py", "--base", str(base), "--weights", str(npz), "--log", str(log),
                 "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported, want = model_io.load(str(out)), model_io.load(str(other))
    for a, b in zip(imported.unet.get_weights(), want.unet.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert json.loads((out / "config.json").read_text())["gpu_train"]["run"]["log"][0]["step"] == 3


def test_weights_of_another_architecture_exit_2(tmp_path):
    base = _model_dir(tmp_path, seed=0)
    bigger = _model_dir(tmp_path, ModelConfig(target="someone", depth=3, filters=8, frame_length=256,
                                              frame_step=64, fft_length=256, patch_frames=32, chunk_frames=64), 1)
    npz = tmp_path / "unet.npz"
    assert _tool("gpu_import.py", "--export", str(bigger), str(npz), "--half").returncode == 0
    proc = _tool("gpu_import.py", "--base", str(base), "--weights", str(npz), "--output-dir", str(tmp_path / "x"))
    assert proc.returncode == 2 and "does not fit" in proc.stderr
    assert not (tmp_path / "x").exists()


@needs_data
def test_pack_holds_the_train_splits_targets_and_interference(tmp_path_factory, tmp_path):
    data = small_dataset(tmp_path_factory, ["--target", TARGET, "--window-s", "2.0", "--hop-s", "2.0",
                                            "--mixtures-per-window", "2", "--split-fractions", "0.5", "0.25",
                                            "0.25", "--num-shards", "2"])
    out = tmp_path / "pack"
    proc = _tool("gpu_pack.py", "--data", str(data), "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    targets, rests, info = gpu_train.load_pack(out)
    assert targets.shape == (info["targets"], info["window"]) and rests.shape == (info["rests"], info["window"])
    assert info["targets"] > 0 and info["rests"] > 0 and info["window"] == 32000
    assert np.all(np.abs(targets).max(axis=1) > 1e-3)  # no silent rows
    assert info["round_trip_snr_db"]["targets"] > 8.0  # Opus at about 32 kbit/s, rows aligned


# ---- the JAX side, in a subprocess (this process's Keras runs on TensorFlow)

JAX_SCRIPT = r'''
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tools")
import jax, jax.numpy as jnp
import gpu_train
from vsep import config
from vsep.config import ModelConfig
from vsep.unet import build_unet
args = json.loads(sys.argv[2])
cfg = config.from_dict(ModelConfig, args["cfg"])
ref = np.load(args["ref"])
unet = build_unet(cfg)
unet.set_weights([ref[f"w{i:03d}"] for i in range(args["n_weights"])])
masks = np.asarray(unet(ref["feat"], training=False))
rng = np.random.default_rng(0)
targets = jnp.asarray(rng.standard_normal((5, 3000)).astype(np.float32) * 0.3)
rests = jnp.asarray(np.cumsum(rng.standard_normal((4, 3000)), axis=1).astype(np.float32) * 0.05)
tcfg = {"chain_swap": 0.5, "other_shift": 0.15, "other_shift_prob": 0.5, "alone": 0.075, "tir_db": (-6.0, 6.0),
        "eq_prob": 0.5, "eq_db": 6.0, "lowpass_prob": 0.25, "gain_db": (-6.0, 6.0)}
bands = jnp.asarray(gpu_train.band_matrix(2000 // 2 + 1))
mix, src = gpu_train.make_batch(jax.random.PRNGKey(0), targets, rests, 64, 2000, tcfg, bands)
swapped = gpu_train.chain_swap(rests[:, :2000], targets[:4, :2000], bands)
plain = dict(tcfg, eq_prob=0.0, chain_swap=0.0)
_, src2 = gpu_train.make_batch(jax.random.PRNGKey(1), targets, rests, 64, 2000, plain, bands)
np.savez(args["out"], masks=masks, mix=np.asarray(mix), src=np.asarray(src), swapped=np.asarray(swapped),
         src2=np.asarray(src2),
         rests=np.asarray(rests[:, :2000]), targets=np.asarray(targets[:4, :2000]), bands=np.asarray(bands))
'''


def _jax_env() -> dict:
    import os

    pytest.importorskip("jax", reason="JAX is in requirements-dev.txt; without it the JAX side cannot run")
    return {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}


def _band_db(x: np.ndarray, bands: np.ndarray) -> np.ndarray:
    e = 10 * np.log10((np.abs(np.fft.rfft(x)) ** 2) @ bands / bands.sum(0) + 1e-10)
    return e - e.mean(-1, keepdims=True)


def test_jax_unet_and_on_device_mixing(tmp_path):
    env = _jax_env()
    model = _model()
    rng = np.random.default_rng(2)
    feat = rng.standard_normal((2, 40, CFG.bins, 1)).astype(np.float32)
    weights = model.unet.get_weights()
    ref = tmp_path / "ref.npz"
    np.savez(ref, feat=feat, **{f"w{i:03d}": w for i, w in enumerate(weights)})
    out = tmp_path / "out.npz"
    args = {"cfg": dataclass_dict(CFG), "ref": str(ref), "n_weights": len(weights), "out": str(out)}
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(ROOT), json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(out)
    # the same U-Net code and weights under JAX compute what TensorFlow computes
    np.testing.assert_allclose(got["masks"], model.unet(feat, training=False).numpy(), atol=1e-5)
    mix, src = got["mix"], got["src"]
    assert mix.shape == (64, 2000) and src.shape == (64, 2, 2000)
    np.testing.assert_allclose(mix, src.sum(axis=1), atol=1e-5)  # the sources add up to the mixture
    assert np.abs(mix).max() <= 0.99 + 1e-5  # never clips
    energy = (src**2).sum(-1)
    assert 0 < (energy[:, 1] < 1e-9).sum() < 20 and 0 < (energy[:, 0] < 1e-9).sum() < 20  # some alone
    energy2 = (got["src2"] ** 2).sum(-1)
    both = (energy2 > 1e-9).all(axis=1)
    tir = 10 * np.log10(energy2[both, 0] / energy2[both, 1])  # without random channels: exactly -6..6 dB
    assert both.sum() > 40 and tir.min() >= -6.01 and tir.max() <= 6.01 and tir.max() - tir.min() > 6
    # a chain swap gives the interference the target's long-term spectral envelope
    before = np.abs(_band_db(got["rests"], got["bands"]) - _band_db(got["targets"], got["bands"])).mean()
    after = np.abs(_band_db(got["swapped"], got["bands"]) - _band_db(got["targets"], got["bands"])).mean()
    assert before > 5 and after < before / 3


def dataclass_dict(cfg) -> dict:
    from vsep import config

    return config.to_dict(cfg)


@needs_data
def test_gpu_train_end_to_end_gives_weights_the_tf_model_loads(tmp_path_factory, tmp_path):
    env = _jax_env()
    data = small_dataset(tmp_path_factory, ["--target", TARGET, "--window-s", "2.0", "--hop-s", "2.0",
                                            "--mixtures-per-window", "2", "--split-fractions", "0.5", "0.25",
                                            "0.25", "--num-shards", "2"])
    pack = tmp_path / "pack"
    assert _tool("gpu_pack.py", "--data", str(data), "--output", str(pack)).returncode == 0
    base = _model_dir(tmp_path, dataclasses_replace(CFG, patch_frames=64), seed=0)
    init = tmp_path / "init.npz"
    assert _tool("gpu_import.py", "--export", str(base), str(init)).returncode == 0
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_train.py"), "--pack", str(pack),
                           "--init", str(init), "--config", str(base / "config.json"), "--out", str(out),
                           "--steps", "3", "--batch-size", "2", "--log-every", "1", "--precision", "float32"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = json.loads((out / "gpu_train_log.json").read_text())["log"]
    assert [r["step"] for r in log] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in log)
    snapshot = out / "unet_000003.npz"
    new = tmp_path / "imported"
    assert _tool("gpu_import.py", "--base", str(base), "--weights", str(snapshot), "--output-dir",
                 str(new)).returncode == 0
    trained, start = model_io.load(str(new)).unet.get_weights(), model_io.load(str(base)).unet.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(trained, start))  # three steps moved the weights


def dataclasses_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)
