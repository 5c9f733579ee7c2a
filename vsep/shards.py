"""TFRecord shard files without TensorFlow: writing, reading back, and integrity.

A shard is a sequence of TFRecord records (``length, masked crc32c of length,
data, masked crc32c of data``), optionally gzip-compressed, exactly as
``tf.data.TFRecordDataset`` reads it. :class:`ShardWriter` streams records to
local disk or ``gs://`` one at a time (memory is one record, whatever the
shard's size) and measures what it wrote: record count, bytes on storage and
their SHA-256, which ``prepare`` records in ``manifest.json`` so that readers
can check a shard before trusting it (:func:`check_shard`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import google_crc32c

from vsep import storage


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One record in TFRecord framing."""
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", masked_crc32c(length)) + record + struct.pack("<I", masked_crc32c(record))


@dataclass(frozen=True)
class ShardInfo:
    """What was written to one shard file (recorded in the manifest)."""

    name: str
    records: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return {"name": self.name, "records": self.records, "bytes": self.bytes, "sha256": self.sha256}


class _Measured:
    """A write-only file wrapper that counts and hashes the bytes going to storage."""

    def __init__(self, f) -> None:
        self.f, self.size, self.hash = f, 0, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.f.write(data)
        self.size += len(data)
        self.hash.update(data)
        return len(data)

    def flush(self) -> None:
        pass


class ShardWriter:
    """Stream records into one shard file (gzip or plain) at ``uri``.

    Use as a context manager; :attr:`info` is set when the block ends. Local
    files are written under a temporary name and renamed, so a reader never
    sees a half-written shard. Gzip output is deterministic (no time stamp).
    """

    def __init__(self, uri: str, gzipped: bool) -> None:
        self.uri, self.gzipped = uri, gzipped
        self.records = 0
        self.info: ShardInfo | None = None

    def __enter__(self) -> ShardWriter:
        self._ctx = storage.open_write(self.uri)
        self._raw = _Measured(self._ctx.__enter__())
        self._out = gzip.GzipFile(fileobj=self._raw, mode="wb", mtime=0, filename="") if self.gzipped else self._raw
        return self

    def write(self, record: bytes) -> None:
        self._out.write(frame(record))
        self.records += 1

    def __exit__(self, *exc) -> None:
        if self.gzipped:
            self._out.close()
        self._ctx.__exit__(*exc)
        if exc[0] is None:
            name = self.uri.rstrip("/").rsplit("/", 1)[-1]
            self.info = ShardInfo(name, self.records, self._raw.size, self._raw.hash.hexdigest())


def read_records(data: bytes, gzipped: bool) -> Iterator[bytes]:
    """The records of a shard's bytes, CRCs checked; ``ValueError`` names the first bad one."""
    if gzipped:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"not a complete gzip stream ({e})") from None
    f, index = io.BytesIO(data), 0
    while head := f.read(12):
        try:
            yield _next_record(f, head)
        except ValueError as e:
            raise ValueError(f"record {index}: {e}") from None
        index += 1


class ShardError(ValueError):
    """A shard is missing, truncated or altered (one line, naming it)."""


def check_shard(uri: str, expected: dict, checksum: bool = True) -> None:
    """Raise :class:`ShardError` unless ``uri`` has the size (and SHA-256) the manifest recorded.

    With ``checksum`` the records are read too (:func:`scan_shard`): each must
    pass its CRCs and the schema, and their count must be the manifest's.
    """
    try:
        n = storage.size(uri)
    except FileNotFoundError:
        raise ShardError(f"shard {uri} is missing") from None
    if n != expected["bytes"]:
        raise ShardError(f"shard {uri} has {n} bytes, the manifest says {expected['bytes']}: truncated or replaced")
    if not checksum:
        return
    scan = scan_shard(uri)
    if scan.sha256 != expected["sha256"]:
        detail = f" (first bad record: {scan.problem})" if scan.problem else ""
        raise ShardError(f"shard {uri} does not match its SHA-256 in the manifest: altered{detail}")
    if scan.problem:
        raise ShardError(f"shard {uri} {scan.problem}")
    if scan.records != expected["records"]:
        raise ShardError(f"shard {uri} holds {scan.records} records, the manifest says {expected['records']}")


class _Hashing:
    """A read-only file wrapper that hashes every byte read through it."""

    def __init__(self, f) -> None:
        self.f, self.hash = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.hash.update(data)
        return data


@dataclass
class Scan:
    """What reading a whole shard found."""

    sha256: str
    records: int  # records read (up to a CRC or framing failure)
    problem: str | None  # the first failure, ``record N: why``
    bad: list[int]  # records that fail the schema (all of them when reading went on)
    stopped: bool  # reading ended at a CRC or framing failure: nothing after it can be read


def scan_shard(uri: str, keep_going: bool = False) -> Scan:
    """Read every record of a shard, streamed (memory: one record), hashing the file.

    A record that fails the schema (:func:`check_example`) stops the scan,
    unless ``keep_going``; a CRC or framing failure always does.
    """
    gzipped = uri.endswith(".gz")
    problem, bad, stopped = None, [], False
    with storage.open_read(uri) as raw:
        hashed = _Hashing(raw)
        f = gzip.GzipFile(fileobj=hashed, mode="rb") if gzipped else hashed
        index = 0
        try:
            while head := f.read(12):
                reason = check_example(_next_record(f, head))
                if reason:
                    problem = problem or f"record {index}: {reason}"
                    bad.append(index)
                    if not keep_going:
                        break
                index += 1
        except (OSError, EOFError, ValueError, zlib.error) as e:  # a flipped byte inside gzip: zlib.error
            problem, stopped = problem or f"record {index}: {str(e).splitlines()[0]}", True
        while hashed.read(8 << 20):
            pass
    return Scan(hashed.hash.hexdigest(), index, problem, bad, stopped)


def _next_record(f, head: bytes) -> bytes:
    if len(head) < 12:
        raise ValueError("truncated record")
    (length,) = struct.unpack("<Q", head[:8])
    if struct.unpack("<I", head[8:12])[0] != masked_crc32c(head[:8]):
        raise ValueError("length checksum mismatch (not a TFRecord, or damaged)")
    body = f.read(length + 4)
    if len(body) < length + 4:
        raise ValueError("truncated record")
    record = body[:length]
    if struct.unpack("<I", body[length:])[0] != masked_crc32c(record):
        raise ValueError("data checksum mismatch")
    return record


def check_example(record: bytes) -> str | None:
    """Why ``record`` is not a usable example of the schema, or ``None``.

    Every feature present with its type; waveforms of ``num_samples`` finite
    samples; ``mixture == target + other + noise``.
    """
    import numpy as np

    from vsep import schema

    try:
        ex = schema.decode(record)
    except (ValueError, KeyError, IndexError, struct.error, UnicodeDecodeError) as e:
        return f"not a vsep example ({e})"
    for keys, kind in ((schema.WAVEFORMS, np.ndarray), (schema.STRINGS, str), (schema.FLOATS, float),
                       (schema.INTS, int)):
        for k in keys:
            if not isinstance(ex.get(k), kind):
                return f"feature {k!r} is missing or has the wrong type"
    n = ex["num_samples"]
    for k in schema.WAVEFORMS:
        if len(ex[k]) != n:
            return f"{k} has {len(ex[k])} samples, num_samples says {n}"
        if not np.all(np.isfinite(ex[k])):
            return f"{k} has NaN or inf samples"
    if np.max(np.abs(ex["mixture"] - (ex["target"] + ex["other"] + ex["noise"])), initial=0.0) > 1e-5:
        return "mixture is not the sum of its sources"
    return None
