"""``gs://`` against a real GCS emulator: the client, vsep.storage, Beam and TF."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid

import apache_beam as beam
import pytest
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from google.api_core.exceptions import NotFound
from google.cloud import storage as gcs_client

from vsep import storage

from gcs_emulator import GcsEmulator
from realdata import records

RECORDS = [f"record-{i:03d}".encode() * (i % 7 + 1) for i in range(40)]


@pytest.fixture()
def prefix(gcs: GcsEmulator) -> str:
    """A fresh ``gs://vsep-test/t/<uuid>`` folder for one test."""
    return gcs.uri("t", uuid.uuid4().hex[:12])


def _answers(host: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(host + "/", timeout=2) as r:
            return r.read() == b"OK"
    except OSError:
        return False


def _raw(gcs: GcsEmulator, uri: str) -> bytes:
    """The stored bytes of ``uri``, as the client sees them (no decompression)."""
    name = uri.removeprefix(gcs.url + "/")
    return gcs_client.Client().bucket(gcs.bucket).blob(name).download_as_bytes()


def _beam_write(prefix: str, records: list[bytes]) -> None:
    options = PipelineOptions(runner="DirectRunner")
    with beam.Pipeline(options=options) as p:
        _ = (
            p
            | beam.Create(records)
            | beam.io.WriteToTFRecord(
                prefix,
                file_name_suffix=".tfrecord.gz",
                compression_type=CompressionTypes.GZIP,
                num_shards=2,
            )
        )


def test_emulator_is_a_live_server_and_env_points_at_it(gcs: GcsEmulator) -> None:
    assert gcs.running
    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs.host
    assert gcs.host.startswith("http://127.0.0.1:")
    assert gcs.url == "gs://vsep-test"
    assert _answers(gcs.host)


def test_google_cloud_storage_upload_download(gcs: GcsEmulator, prefix: str) -> None:
    client = gcs_client.Client()
    bucket = client.bucket(gcs.bucket)
    name = prefix.removeprefix(gcs.url + "/") + "/hello.bin"
    payload = bytes(range(256)) * 1000
    bucket.blob(name).upload_from_string(payload)

    assert bucket.blob(name).download_as_bytes() == payload
    listed = [b.name for b in client.list_blobs(gcs.bucket, prefix=name)]
    assert listed == [name]
    with pytest.raises(NotFound):
        bucket.blob(name + ".missing").download_as_bytes()


def test_vsep_storage_on_gs(gcs: GcsEmulator, prefix: str) -> None:
    a, b = storage.join(prefix, "a.txt"), storage.join(prefix, "sub", "b.bin")
    storage.write_bytes(a, b"alpha")
    storage.write_bytes(b, b"\x00beta\xff")

    assert storage.read_bytes(a) == b"alpha"
    assert storage.exists(a) and storage.exists(b)
    assert not storage.exists(storage.join(prefix, "nope.txt"))
    assert storage.glob(storage.join(prefix, "*.txt")) == [a]
    assert storage.list_files(prefix) == sorted([a, b])
    with pytest.raises(storage.StorageError):
        storage.read_bytes(storage.join(prefix, "nope.txt"))

    moved = storage.join(prefix, "moved", "a.txt")
    storage.rename([a], [moved])
    assert not storage.exists(a)
    assert storage.read_bytes(moved) == b"alpha"

    storage.delete([moved, b, storage.join(prefix, "never-there")])
    assert storage.list_files(prefix) == []


def test_beam_tfrecords_gzip_two_shards_round_trip(gcs: GcsEmulator, prefix: str) -> None:
    _beam_write(storage.join(prefix, "part"), RECORDS)

    shards = storage.glob(storage.join(prefix, "part-*"))
    assert shards == [
        storage.join(prefix, "part-00000-of-00002.tfrecord.gz"),
        storage.join(prefix, "part-00001-of-00002.tfrecord.gz"),
    ]
    # The bytes in the emulator are gzip'd TFRecords holding every record.
    stored = [r for s in shards for r in records(_raw(gcs, s), gzipped=True)]
    assert sorted(stored) == sorted(RECORDS)

    options = PipelineOptions(runner="DirectRunner")
    with beam.Pipeline(options=options) as p:
        read = p | beam.io.ReadFromTFRecord(storage.join(prefix, "part-*"), compression_type=CompressionTypes.AUTO)
        assert_that(read, equal_to(RECORDS))


def test_restart_keeps_objects(gcs: GcsEmulator, prefix: str) -> None:
    uri = storage.join(prefix, "survives.txt")
    storage.write_bytes(uri, b"still here")
    gcs.stop()
    try:
        assert not gcs.running
        assert not _answers(gcs.host)
    finally:
        gcs.start()
    assert gcs.running
    assert storage.read_bytes(uri) == b"still here"


_TF_SCRIPT = r"""
import json, sys
import tensorflow as tf
src, dst = sys.argv[1], sys.argv[2]
files = sorted(tf.io.gfile.glob(src + "/part-*"))
read = [r.numpy().decode() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
with tf.io.TFRecordWriter(dst, options="GZIP") as w:
    for i in range(3):
        w.write(f"from-tf-{i}".encode())
print(json.dumps({"files": files, "records": read, "exists": tf.io.gfile.exists(dst)}))
"""


def test_tensorflow_gs_filesystem_through_proxy(gcs: GcsEmulator, prefix: str) -> None:
    """TF's built-in gs:// reads Beam's shards and writes a file Beam reads back.

    Runs TF in a subprocess: the environment must be set before TF first
    touches gs://, and a crash there must not take pytest down.
    """
    _beam_write(storage.join(prefix, "part"), RECORDS)
    dst = storage.join(prefix, "tf", "out.tfrecord.gz")
    proc = subprocess.run(
        [sys.executable, "-c", _TF_SCRIPT, prefix, dst],
        env={**os.environ, **gcs.tf_env(), "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    assert result["files"] == storage.glob(storage.join(prefix, "part-*"))
    assert sorted(result["records"]) == sorted(r.decode() for r in RECORDS)
    assert result["exists"] is True
    written = records(_raw(gcs, dst), gzipped=True)
    assert written == [b"from-tf-0", b"from-tf-1", b"from-tf-2"]
