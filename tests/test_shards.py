"""Shard files written without TensorFlow: tf.data reads them; damage is found and named."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from vsep import shards


def write(path, records, gzipped=True) -> shards.ShardInfo:
    with shards.ShardWriter(str(path), gzipped) as w:
        for r in records:
            w.write(r)
    return w.info


@pytest.mark.parametrize("gzipped", [True, False])
def test_tf_data_reads_what_the_writer_wrote(tmp_path, gzipped):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    records = [rng.standard_normal(int(n)).astype("<f4").tobytes() for n in rng.integers(1, 5000, 20)]
    path = tmp_path / ("a.tfrecord.gz" if gzipped else "a.tfrecord")
    info = write(path, records, gzipped)
    data = path.read_bytes()
    assert info.records == 20 and info.bytes == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    got = [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP" if gzipped else "")]
    assert got == records
    assert list(shards.read_records(data, gzipped)) == records
    assert write(tmp_path / "b", records, gzipped).sha256 == info.sha256  # deterministic bytes


def test_no_partial_file_under_the_name_when_writing_fails(tmp_path):
    path = tmp_path / "x.tfrecord.gz"
    with pytest.raises(RuntimeError):
        with shards.ShardWriter(str(path), True) as w:
            w.write(b"abc")
            raise RuntimeError("worker died")
    assert not path.exists()


def test_truncation_and_byte_flips_are_found(tmp_path):
    records = [bytes([i]) * 300 for i in range(10)]
    data = (tmp_path / "s").read_bytes() if write(tmp_path / "s", records, False) else b""
    with pytest.raises(ValueError, match="truncated record"):
        list(shards.read_records(data[:-7], False))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    with pytest.raises(ValueError, match="checksum mismatch"):
        list(shards.read_records(bytes(flipped), False))
    gz = (tmp_path / "g").read_bytes() if write(tmp_path / "g", records) else b""
    with pytest.raises(ValueError, match="gzip"):
        list(shards.read_records(gz[: len(gz) // 2], True))


def example(i: int, n: int = 400) -> bytes:
    """A valid example of the schema (the sources sum to the mixture)."""
    from vsep import schema

    rng = np.random.default_rng(i)
    t, o = (rng.standard_normal(n).astype(np.float32) * 0.1 for _ in range(2))
    z = np.zeros(n, np.float32)
    ex = {"mixture": t + o, "target": t, "other": o, "noise": z, **{k: f"{k}{i}" for k in schema.STRINGS},
          **{k: 0.0 for k in schema.FLOATS}, "sample_rate": 16000, "num_samples": n}
    return schema.encode(ex)


def test_check_shard_names_missing_truncated_and_altered(tmp_path):
    info = write(tmp_path / "s.tfrecord.gz", [example(i) for i in range(5)]).to_dict()
    path = tmp_path / "s.tfrecord.gz"
    shards.check_shard(str(path), info)  # intact
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(shards.ShardError, match="truncated or replaced") as e:
        shards.check_shard(str(path), info)
    assert str(path) in str(e.value)
    altered = bytearray(data)
    altered[20] ^= 1
    path.write_bytes(bytes(altered))
    shards.check_shard(str(path), info, checksum=False)  # same size: only the checksum can tell
    with pytest.raises(shards.ShardError, match="altered"):
        shards.check_shard(str(path), info)
    path.unlink()
    with pytest.raises(shards.ShardError, match="missing"):
        shards.check_shard(str(path), info)
