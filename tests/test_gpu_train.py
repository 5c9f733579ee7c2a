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
