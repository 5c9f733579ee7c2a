"""A model directory: config as JSON next to the weights, and clear errors when it is wrong.

Layout::

    config.json          {"format": "vsep-model", "format_version", "model": ModelConfig, "train": TrainConfig, ...}
    model.weights.h5     weights of the best epoch (lowest validation loss)
    checkpoints/         training state for resuming (weights, optimizer, epoch)
    history.jsonl        one line per epoch: step, losses, validation SI-SDR(i)
    separate.json        optional: the SeparateConfig this model was validated with (its inference defaults,
                         ``vsep export --save-defaults``); options given to a command override them
    train_log.csv        Keras CSV log; tensorboard/ the TensorBoard logs
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vsep import __version__, config, storage
from vsep.config import ModelConfig, TrainConfig

FORMAT = "vsep-model"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.weights.h5"
EMBEDDINGS = "embeddings.json"  # named voices stored with a speaker-conditioned model (e.g. its default target)
SEPARATE = "separate.json"  # the model's own inference defaults (a SeparateConfig), where they differ
BUNDLED = Path(__file__).resolve().parent / "models" / "default"
BUNDLED_ENROLL = Path(__file__).resolve().parent / "models" / "enroll"  # the bundled speaker-conditioned model


class ModelDirError(ValueError):
    """A model directory that cannot be used; the message is one line."""


def config_document(mcfg: ModelConfig, tcfg: TrainConfig, **extra: Any) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vsep_version": __version__,
        "model": config.to_dict(mcfg),
        "train": config.to_dict(tcfg),
        **extra,
    }


def write_config(model_dir: str, doc: dict[str, Any]) -> None:
    storage.write_text(storage.join(model_dir, CONFIG), json.dumps(doc, indent=2, sort_keys=True))


def read_config(model_dir: str) -> tuple[ModelConfig, TrainConfig, dict[str, Any]]:
    """Configs of a model directory, or :class:`ModelDirError` naming what is wrong."""
    if "://" not in model_dir and not os.path.isdir(model_dir):
        raise ModelDirError(f"{model_dir}: model directory does not exist")
    uri = storage.join(model_dir, CONFIG)
    if not storage.exists(uri):
        raise ModelDirError(f"{model_dir}: not a vsep model directory (no {CONFIG})")
    try:
        doc = json.loads(storage.read_text(uri))
    except json.JSONDecodeError as e:
        raise ModelDirError(f"{uri}: unreadable config ({e.msg})") from None
    if doc.get("format") != FORMAT:
        raise ModelDirError(f"{uri}: not a vsep model config")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ModelDirError(
            f"{model_dir}: written by an incompatible vsep (model format {doc.get('format_version')}, "
            f"this vsep reads {FORMAT_VERSION})"
        )
    try:
        # models written before ``input_norm`` existed fed the U-Net unnormalised magnitudes
        mcfg = config.from_dict(ModelConfig, {"input_norm": "none", **doc["model"]})
        tcfg = config.from_dict(TrainConfig, doc.get("train", {}))
    except (ValueError, TypeError, KeyError) as e:
        raise ModelDirError(f"{uri}: incompatible model config ({e})") from None
    return mcfg, tcfg, doc


def load(model_dir: str | None = None):
    """The :class:`vsep.model.SeparationModel` of a model directory (default: the bundled model)."""
    from vsep.model import SeparationModel

    model_dir = str(model_dir or BUNDLED)
    mcfg, tcfg, _ = read_config(model_dir)
    weights = storage.join(model_dir, WEIGHTS)
    if not storage.exists(weights):
        raise ModelDirError(f"{model_dir}: no trained weights ({WEIGHTS})")
    # the shortest input that makes every weight (a patch's worth of U-Net work would cost start-up time)
    model = SeparationModel(mcfg, tcfg).build_for(mcfg.patch_samples(2**mcfg.depth))
    with storage.local_file(weights) as local:  # h5 files are read through a local path
        try:
            model.load_weights(local)
        except (ValueError, OSError) as e:
            raise ModelDirError(f"{model_dir}: weights do not fit the config ({str(e).splitlines()[0][:200]})") from None
    return model


def save_weights(model, model_dir: str) -> None:
    """Write ``model.weights.h5`` (via a local temp file for ``gs://``), atomically for local dirs."""
    target = storage.join(model_dir, WEIGHTS)
    if "://" in model_dir:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, WEIGHTS)
            model.save_weights(path)
            storage.write_bytes(target, Path(path).read_bytes())
        return
    tmp = os.path.join(model_dir, "tmp." + WEIGHTS)
    model.save_weights(tmp)
    os.replace(tmp, target)


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic units (AMX or AVX512-BF16), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``mixed_bfloat16`` on CPUs with bfloat16 units, else ``float32``; other values as given."""
    if precision != "auto":
        return precision
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


def with_precision(model, precision: str):
    """The same model (same weights) computing its U-Net in ``precision`` (``auto``: :func:`resolve_precision`)."""
    from vsep.model import SeparationModel

    precision = resolve_precision(precision)
    if getattr(model, "precision", "float32") == precision:
        return model
    other = SeparationModel(model.cfg, model.train_cfg, precision=precision).build_for()
    other.set_weights(model.get_weights())
    return other


def read_embeddings(model_dir: str) -> dict:
    """Named embeddings ``{name: [embed_dim]}`` stored with a conditioned model (empty if none)."""
    import numpy as np

    path = os.path.join(model_dir, EMBEDDINGS)
    if "://" in model_dir or not os.path.exists(path):
        return {}
    with open(path) as f:
        return {k: np.asarray(v, np.float32) for k, v in json.load(f).items()}


def write_embeddings(model_dir: str, embeddings: dict) -> None:
    import numpy as np

    with open(os.path.join(model_dir, EMBEDDINGS), "w") as f:
        json.dump({k: [round(float(x), 6) for x in np.asarray(v).ravel()] for k, v in embeddings.items()}, f)


def separate_defaults(model_dir: str | None):
    """The :class:`vsep.config.SeparateConfig` stored with a model (``separate.json``), else the global
    defaults; a model directory that cannot be read is left to the command's own checks."""
    from vsep.config import SeparateConfig

    path = storage.join(str(model_dir or BUNDLED), SEPARATE)
    try:
        if not storage.exists(path):
            return SeparateConfig()
        text = storage.read_text(path)
    except (OSError, storage.StorageError):
        return SeparateConfig()
    try:
        return config.loads(SeparateConfig, text)
    except (ValueError, TypeError) as e:
        raise ModelDirError(f"{path}: not a SeparateConfig ({str(e).splitlines()[0]})") from None


def write_separate_defaults(model_dir: str, scfg) -> str:
    """Store ``scfg`` as the model's inference defaults (``separate.json``); returns the path."""
    path = storage.join(model_dir, SEPARATE)
    storage.write_text(path, config.dumps(scfg))
    return path


def serving(model_dir: str | None, voices: list[tuple[str, object]] | None) -> str | None:
    """The model a command serves: ``model_dir`` when given; else, where ``voices`` (``[(name, clip or
    None)]``) need a speaker-conditioned model (a clip, or two or more voices), the bundled enrollment model
    (:data:`BUNDLED_ENROLL`); else ``None``, the bundled one-target model."""
    if model_dir or not voices:
        return model_dir
    needs = len(voices) > 1 or any(clip is not None for _, clip in voices)
    return str(BUNDLED_ENROLL) if needs and (BUNDLED_ENROLL / CONFIG).exists() else None
