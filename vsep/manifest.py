"""The manifest of a prepared data set: what ``vsep prepare`` wrote, read without TensorFlow."""

from __future__ import annotations

import json
from typing import Any

from vsep import storage
from vsep.config import ModelConfig

MANIFEST = "manifest.json"


def read_manifest(prefix: str) -> dict[str, Any]:
    """A prepared data set's manifest, with absolute shard URIs under ``files``."""
    uri = storage.join(prefix, MANIFEST)
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri}: no prepared data set (run 'vsep prepare' first)")
    m = json.loads(storage.read_text(uri))
    m["files"] = {s: [storage.join(prefix, n) for n in names] for s, names in m["shards"].items()}
    return m


def check_compatible(manifest: dict[str, Any], cfg: ModelConfig, split: str) -> list[str]:
    """The shard files of ``split``; a clear ``ValueError`` if the data cannot feed the model."""
    rate = manifest["config"]["sample_rate"]
    if rate != cfg.sample_rate:
        raise ValueError(f"data sample rate {rate} Hz differs from the model's {cfg.sample_rate} Hz")
    files = manifest["files"].get(split, [])
    if not files or manifest["counts"].get(split, 0) == 0:
        raise ValueError(f"the {split} split of the data set is empty")
    window = int(round(manifest["config"]["window_s"] * rate))
    if window < cfg.patch_samples():
        raise ValueError(
            f"data windows ({window} samples) are shorter than a model patch ({cfg.patch_samples()} samples)"
        )
    return files
