"""The manifest of a prepared data set: what ``vsep prepare`` wrote, read without TensorFlow."""

from __future__ import annotations

import json
from typing import Any

from vsep import storage
from vsep.config import ModelConfig

MANIFEST = "manifest.json"


def read_manifest(prefix: str) -> dict[str, Any]:
    """A prepared data set's manifest, with absolute shard URIs under ``files``.

    A manifest that is not JSON, or lacks what ``prepare`` writes, is a one-line ``ValueError``.
    """
    uri = storage.join(prefix, MANIFEST)
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri}: no prepared data set (run 'vsep prepare' first)")
    try:
        m = json.loads(storage.read_text(uri))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{uri}: not a vsep manifest (not JSON: {str(e).splitlines()[0]})") from None
    missing = [k for k in ("shards", "counts", "config") if not isinstance(m, dict) or not isinstance(m.get(k), dict)]
    if missing:
        raise ValueError(f"{uri}: not a vsep manifest (no {', '.join(missing)})")
    m["prefix"] = prefix
    m["files"] = {s: [storage.join(prefix, n) for n in names] for s, names in m["shards"].items()}
    return m


def _cache_file(manifest: dict[str, Any]) -> str:
    """Where this machine remembers which shards of a data set it has checksummed."""
    import hashlib
    import os

    root = os.environ.get("VSEP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "vsep")
    key = hashlib.sha1(f"{manifest['prefix']}|{manifest.get('run_id')}".encode()).hexdigest()[:16]
    return os.path.join(root, "verified", f"{key}.json")


def verify_shards(manifest: dict[str, Any], splits: tuple[str, ...] = ("train", "val", "test"),
                  skip_corrupt: bool = False) -> None:
    """Check every shard of ``splits`` against the sizes and SHA-256 ``prepare`` recorded.

    Sizes are checked every time (cheap); checksums once per shard and data
    set, remembered in a small cache file on this machine (a changed local
    file, by size or modification time, is checksummed again). A missing,
    truncated or altered shard is :class:`vsep.shards.ShardError`, one line
    naming it. Manifests written before shard checksums existed are checked
    for missing shards only.

    ``skip_corrupt``: damage is not an error; every record of the damaged
    shards is read and ``manifest["skipped"]`` maps each such shard to the
    records to leave out (``bad`` indices, ``readable``: how many records can
    be read before a CRC or framing failure, ``None`` for all); a missing
    shard is dropped from ``manifest["files"]``.
    """
    import os

    from vsep.shards import ShardError, check_shard

    info = manifest.get("shard_info")
    for split in splits:
        for uri in manifest["files"].get(split, []):
            if info is None and not storage.exists(uri):
                raise ShardError(f"shard {uri} is missing")
    if info is None:
        return
    cache_path = _cache_file(manifest)
    try:
        with open(cache_path) as f:
            done = json.load(f)
    except (OSError, ValueError):
        done = {}
    changed = False
    for split in splits:
        for entry in info.get(split, []):
            uri = storage.join(manifest["prefix"], entry["name"])
            stamp = [entry["sha256"], os.stat(uri).st_mtime_ns if "://" not in uri and os.path.exists(uri) else 0]
            known = done.get(uri) == stamp
            try:
                check_shard(uri, entry, checksum=not known)
            except ShardError:
                if not skip_corrupt:
                    raise
                _plan_skips(manifest, split, uri)
                continue
            if not known:
                done[uri], changed = stamp, True
    if changed:
        os.makedirs(os.path.dirname(cache_path), exist_ok=True)
        with open(cache_path + ".tmp", "w") as f:
            json.dump(done, f)
        os.replace(cache_path + ".tmp", cache_path)


def _plan_skips(manifest: dict[str, Any], split: str, uri: str) -> None:
    """Record what of a damaged shard can be trained on (``--skip-corrupt``)."""
    from vsep.shards import scan_shard

    if not storage.exists(uri):
        manifest["files"][split] = [f for f in manifest["files"][split] if f != uri]
        manifest.setdefault("skipped", {})[uri] = {"bad": [], "readable": 0, "missing": True}
        return
    scan = scan_shard(uri, keep_going=True)
    manifest.setdefault("skipped", {})[uri] = {"bad": scan.bad, "readable": scan.records if scan.stopped else None,
                                               "missing": False}


def skipped_records(manifest: dict[str, Any]) -> int:
    """How many records ``--skip-corrupt`` leaves out (unreadable tails count as the manifest's remainder)."""
    info = {storage.join(manifest["prefix"], e["name"]): e["records"]
            for entries in manifest.get("shard_info", {}).values() for e in entries}
    total = 0
    for uri, s in manifest.get("skipped", {}).items():
        expected = info.get(uri, 0)
        total += len(s["bad"]) + (max(0, expected - s["readable"]) if s["readable"] is not None else 0)
    return total


def check_compatible(manifest: dict[str, Any], cfg: ModelConfig, split: str, skip_corrupt: bool = False) -> list[str]:
    """The shard files of ``split``; a clear ``ValueError`` if the data cannot feed the model."""
    rate = manifest["config"]["sample_rate"]
    if rate != cfg.sample_rate:
        raise ValueError(f"data sample rate {rate} Hz differs from the model's {cfg.sample_rate} Hz")
    files = manifest["files"].get(split, [])
    if not files or manifest["counts"].get(split, 0) == 0:
        raise ValueError(f"the {split} split of the data set is empty")
    verify_shards(manifest, (split,), skip_corrupt)
    files = manifest["files"][split]
    if not files:
        raise ValueError(f"no readable shard is left in the {split} split")
    window = int(round(manifest["config"]["window_s"] * rate))
    if window < cfg.patch_samples():
        raise ValueError(
            f"data windows ({window} samples) are shorter than a model patch ({cfg.patch_samples()} samples)"
        )
    return files
