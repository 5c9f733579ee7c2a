"""A weight soup: the weighted average of models of the same architecture, fine-tuned from one another.

    .venv/bin/python tools/soup.py --output runs/soup --model vsep/models/default 0.5 --model runs/stage4 0.5

Averaging the weights of a fine-tuned model with the model it was fine-tuned from (WiSE-FT, Wortsman et
al. 2022) or with sibling fine-tunes (model soups) often holds up better on data unlike the fine-tuning
data than either model alone, at no cost at inference: the result is one model of the same size. Every
variable of ``model.weights.h5`` (batch-norm statistics included) is averaged with the given weights
(normalised to sum to 1); the configs' ``model`` sections must be equal, except that an ingredient without
decoder FiLM, a time RNN or speaker conditioning that the first model has is first given them as the identity
(as ``vsep train --init-from`` does), so a fine-tune that added them can be averaged with the model it started
from. The output is a model directory: the first model's ``config.json``, ``splits.json`` and stored voices
(``embeddings.json``), the averaged weights, ``soup.json`` naming the ingredients and their weights, and
``model.onnx`` for fast serving.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

WEIGHTS = "model.weights.h5"


def _datasets(h5) -> dict[str, object]:
    """``{path: dataset}`` of every dataset under an open h5py file or group."""
    import h5py

    found: dict[str, object] = {}
    h5.visititems(lambda name, obj: found.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def lift(model_dir: str, like: str, output: str) -> str:
    """Write ``model_dir``'s weights in the architecture of ``like`` to ``output`` (a model directory with
    ``like``'s config): the layers ``model_dir`` lacks (decoder FiLM, a time RNN, speaker conditioning) start as
    the identity (:func:`vsep.train.init_weights`), so the lifted model computes what ``model_dir`` computes."""
    from vsep import model_io
    from vsep.model import SeparationModel
    from vsep.train import init_weights

    mcfg, tcfg, _ = model_io.read_config(like)
    model = SeparationModel(mcfg, tcfg).build_for(mcfg.patch_samples(2**mcfg.depth))
    init_weights(model, mcfg, model_dir)
    Path(output).mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(like) / "config.json", Path(output) / "config.json")
    model_io.save_weights(model, output)
    return output


def _same_architecture(models: list[tuple[str, float]], tmp: str) -> list[tuple[str, float]]:
    """``models`` with every ingredient whose model config differs from the first's lifted to it (see :func:`lift`)."""
    first = json.loads((Path(models[0][0]) / "config.json").read_text())["model"]
    out = [models[0]]
    for i, (d, w) in enumerate(models[1:], 1):
        if json.loads((Path(d) / "config.json").read_text())["model"] != first:
            try:
                d = lift(d, models[0][0], str(Path(tmp) / f"lifted{i}"))
            except ValueError:
                raise ValueError("the models' configs differ: only models of one architecture (or one that "
                                 "adds identity-initialised layers to the others) can be averaged") from None
        out.append((d, w))
    return out


def _serving_files(first: Path, out: Path) -> None:
    """``model.onnx`` (and ``ge2e.npz`` for a GE2E-conditioned model) for the averaged weights, where onnx is
    installed; ``vsep separate`` serves with TensorFlow without them."""
    from vsep import model_io, onnx_model

    if (first / "embeddings.json").exists():
        shutil.copy(first / "embeddings.json", out / "embeddings.json")
    try:
        onnx_model.write(model_io.load(str(out)), out)
    except ImportError:
        pass


def soup(models: list[tuple[str, float]], output: str, serving: bool = True) -> Path:
    """Write the weighted average of ``models`` (``[(directory, weight)]``) to ``output``; returns it."""
    if len(models) < 2:
        raise ValueError("a soup needs two or more models")
    total = sum(w for _, w in models)
    if total <= 0 or any(w < 0 for _, w in models):
        raise ValueError("weights must be non-negative and not all zero")
    with tempfile.TemporaryDirectory() as tmp:
        out = _average(_same_architecture(models, tmp), output, total)
    (out / "soup.json").write_text(json.dumps({"ingredients": [{"model": str(d), "weight": w / total}
                                                               for d, w in models]}, indent=1))
    if serving:
        _serving_files(Path(models[0][0]), out)
    return out


def _average(models: list[tuple[str, float]], output: str, total: float) -> Path:
    """The weighted average of the ``model.weights.h5`` of ``models`` (one architecture) into ``output``."""
    import h5py

    configs = [json.loads((Path(d) / "config.json").read_text())["model"] for d, _ in models]
    if any(c != configs[0] for c in configs[1:]):
        raise ValueError("the models' configs differ: only models of one architecture can be averaged")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    first = Path(models[0][0])
    for name in ("config.json", "splits.json"):
        if (first / name).exists():
            shutil.copy(first / name, out / name)
    tmp = out / (WEIGHTS + ".partial")
    files = [h5py.File(Path(d) / WEIGHTS, "r") for d, _ in models]
    try:
        shutil.copy(Path(models[0][0]) / WEIGHTS, tmp)  # the first file's layout, values replaced below
        # the model's variables; a training run's file may also hold its optimizer's (the first file's are kept)
        sets = [{k: v for k, v in _datasets(f).items() if not k.startswith("optimizer/")} for f in files]
        if any(set(s) != set(sets[0]) for s in sets[1:]):
            raise ValueError("the models' weight files hold different variables")
        with h5py.File(tmp, "r+") as dst:
            for path, ds in sets[0].items():
                if ds.dtype.kind != "f":
                    continue  # counters and the like: the first model's
                acc = sum(np.asarray(s[path], np.float64) * (w / total) for s, (_, w) in zip(sets, models))
                dst[path][...] = acc.astype(ds.dtype)
    finally:
        for f in files:
            f.close()
    tmp.replace(out / WEIGHTS)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs=2, action="append", metavar=("DIR", "WEIGHT"), required=True,
                   help="an ingredient and its weight (give two or more)")
    p.add_argument("--output", required=True, help="the soup's model directory")
    args = p.parse_args(argv)
    try:
        print(soup([(d, float(w)) for d, w in args.model], args.output))
    except (ValueError, OSError) as e:
        print(f"soup: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
