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
import struct
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
        except (OSError, EOFError) as e:
            raise ValueError(f"not a complete gzip stream ({e})") from None
    pos, index = 0, 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError(f"truncated record {index}")
        length_bytes = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        if struct.unpack("<I", data[pos + 8 : pos + 12])[0] != masked_crc32c(length_bytes):
            raise ValueError(f"record {index}: length checksum mismatch")
        end = pos + 12 + length
        if end + 4 > len(data):
            raise ValueError(f"truncated record {index}")
        record = data[pos + 12 : end]
        if struct.unpack("<I", data[end : end + 4])[0] != masked_crc32c(record):
            raise ValueError(f"record {index}: data checksum mismatch")
        yield record
        pos, index = end + 4, index + 1


class ShardError(ValueError):
    """A shard is missing, truncated or altered (one line, naming it)."""


def sha256_of(uri: str) -> str:
    """SHA-256 of file ``uri``, streamed in 8 MB blocks."""
    h = hashlib.sha256()
    with storage.open_read(uri) as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def check_shard(uri: str, expected: dict, checksum: bool = True) -> None:
    """Raise :class:`ShardError` unless ``uri`` has the size (and SHA-256) the manifest recorded."""
    try:
        n = storage.size(uri)
    except FileNotFoundError:
        raise ShardError(f"shard {uri} is missing") from None
    if n != expected["bytes"]:
        raise ShardError(f"shard {uri} has {n} bytes, the manifest says {expected['bytes']}: truncated or replaced")
    if checksum and sha256_of(uri) != expected["sha256"]:
        raise ShardError(f"shard {uri} does not match its SHA-256 in the manifest: altered")
