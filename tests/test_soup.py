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
