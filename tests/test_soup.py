"""tools/soup.py: the weighted average of two models of one architecture is a loadable model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from vsep import model_io
from vsep.config import ModelConfig, TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import soup  # noqa: E402

pytest.importorskip("tensorflow")

TINY = ModelConfig(depth=3, filters=4, frame_length=256, frame_step=64, fft_length=256, patch_frames=32,
                   chunk_frames=64)


def _model_dir(root: Path, name: str, seed: int, cfg: ModelConfig = TINY) -> tuple[Path, list[np.ndarray]]:
    from vsep.model import SeparationModel

    model = SeparationModel(cfg).build_for()
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in model.get_weights()])
    d = root / name
    d.mkdir()
    model_io.save_weights(model, str(d))
    model_io.write_config(str(d), model_io.config_document(cfg, TrainConfig()))
    return d, model.get_weights()


def test_soup_is_the_weighted_average_and_loads(tmp_path):
    a, wa = _model_dir(tmp_path, "a", 1)
    b, wb = _model_dir(tmp_path, "b", 2)
    out = soup.soup([(str(a), 3.0), (str(b), 1.0)], str(tmp_path / "s"))  # weights normalised: 0.75 / 0.25
    loaded = model_io.load(str(out)).get_weights()
    assert len(loaded) == len(wa) == len(wb)
    for x, y, z in zip(loaded, wa, wb):
        np.testing.assert_allclose(x, 0.75 * y + 0.25 * z, rtol=1e-5, atol=1e-6)
    assert any(np.abs(y - z).max() > 1e-3 for y, z in zip(wa, wb))  # the ingredients differ
    doc = json.loads((out / "soup.json").read_text())
    assert [i["weight"] for i in doc["ingredients"]] == [0.75, 0.25]


def test_different_architectures_are_one_line_and_exit_2(tmp_path, capsys):
    a, _ = _model_dir(tmp_path, "a", 1)
    b, _ = _model_dir(tmp_path, "b", 2, ModelConfig(depth=3, filters=8, frame_length=256, frame_step=64,
                                                    fft_length=256, patch_frames=32, chunk_frames=64))
    assert soup.main(["--output", str(tmp_path / "s"), "--model", str(a), "1", "--model", str(b), "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "configs differ" in err[0]
    assert not (tmp_path / "s").exists()


def test_a_model_without_decoder_film_is_lifted_to_the_identity_and_averaged(tmp_path):
    """A fine-tune that added decoder FiLM (and a weights file that also holds its optimizer's state) can be
    averaged with the model it started from: that one takes part as itself, its missing FiLM as the identity."""
    from dataclasses import replace

    import keras
    import tensorflow as tf

    base_cfg = replace(TINY, embed_dim=8)
    film_cfg = replace(base_cfg, film_decoder=True)
    base, _ = _model_dir(tmp_path, "base", 1, base_cfg)
    film, w_film = _model_dir(tmp_path, "film", 2, film_cfg)
    trained = model_io.load(str(film))  # as a training run writes it: optimizer variables in the file too
    trained.compile(optimizer=keras.optimizers.Adam())
    trained.optimizer.build(trained.trainable_variables)
    model_io.save_weights(trained, str(film))
    x = tf.random.normal([2, TINY.patch_samples()], seed=3) * 0.1
    emb = tf.math.l2_normalize(tf.random.normal([2, 8], seed=4), axis=-1)
    want = model_io.load(str(base))(x, embedding=emb).numpy()
    only_base = soup.soup([(str(film), 0.0), (str(base), 1.0)], str(tmp_path / "s0"), serving=False)
    np.testing.assert_allclose(model_io.load(str(only_base))(x, embedding=emb).numpy(), want, atol=1e-5)
    half = model_io.load(str(soup.soup([(str(film), 1.0), (str(base), 1.0)], str(tmp_path / "s1"), serving=False)))
    film_layer = half.unet.get_layer("dec1_film").get_weights()
    fresh = model_io.load(str(film)).unet.get_layer("dec1_film").get_weights()
    lifted = model_io.load(soup.lift(str(base), str(film), str(tmp_path / "l")))
    identity = lifted.unet.get_layer("dec1_film").get_weights()
    for got, a, b in zip(film_layer, fresh, identity):
        np.testing.assert_allclose(got, 0.5 * a + 0.5 * b, rtol=1e-5, atol=1e-6)
    assert np.abs(half(x, embedding=emb).numpy() - want).max() > 1e-4  # the FiLM fine-tune does count
    assert len(w_film) == len(half.get_weights())
