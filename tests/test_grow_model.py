"""``tools/grow_model.py``: a trained U-Net grown by one level computes what it did before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vsep import model_io
from vsep.config import ModelConfig, TrainConfig

tf = pytest.importorskip("tensorflow")
ROOT = Path(__file__).resolve().parent.parent
TINY = ModelConfig(target="someone", depth=3, filters=4, frame_length=256, frame_step=64, fft_length=256,
                   patch_frames=32, chunk_frames=64)


def test_grown_model_keeps_the_output_and_adds_a_level(tmp_path):
    from vsep.model import SeparationModel

    old_dir = tmp_path / "old"
    old_dir.mkdir()
    old = SeparationModel(TINY).build_for()
    # trained-looking weights: random everywhere, batch-norm statistics included, so nothing is trivially zero
    rng = np.random.default_rng(0)
    old.set_weights([(rng.standard_normal(w.shape) * 0.2 + (1.0 if "variance" in v.path else 0.0)).astype(w.dtype)
                     for w, v in zip(old.get_weights(), old.weights)])
    model_io.save_weights(old, str(old_dir))
    model_io.write_config(str(old_dir), model_io.config_document(TINY, TrainConfig()))
    out = tmp_path / "grown"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "grow_model.py"), "--model", str(old_dir),
                           "--output-dir", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "config.json").read_text())
    assert doc["model"]["depth"] == 4 and doc["grown_from"] == str(old_dir)
    grown = model_io.load(str(out))
    assert grown.cfg.depth == 4 and grown.unet.count_params() > 2 * old.unet.count_params()
    x = tf.constant(rng.standard_normal([2, 5000]).astype(np.float32) * 0.1)
    before, after = old(x).numpy(), grown(x).numpy()
    assert np.max(np.abs(before)) > 1e-3
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-4)  # float round-off of other conv shapes
    # the deconvolution that read the old bottleneck: old weights on the skip half, zeros on the new level's half
    kernel = grown.unet.get_layer("dec2_deconv").get_weights()[0]  # [k, k, out, in]
    old_kernel = old.unet.get_layer("dec2_deconv").get_weights()[0]
    np.testing.assert_array_equal(kernel[..., -old_kernel.shape[-1]:], old_kernel)
    assert not np.any(kernel[..., : -old_kernel.shape[-1]])
    assert np.any(grown.unet.get_layer("enc3_conv").get_weights()[0])  # the new level is not dead
