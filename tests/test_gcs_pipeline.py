"""collect and prepare with every path on gs://, against a real GCS emulator."""

from __future__ import annotations

import json

import numpy as np

from vsep import lake, storage

from realdata import TARGET, examples_of, needs_data, small_corpus

pytestmark = needs_data


def test_collect_and_prepare_on_gcs(gcs, tmp_path):
    from beam_jobs import collect, prepare

    corpus = small_corpus(tmp_path / "corpus")
    lake_uri, out_uri = gcs.uri("gcs-test", "lake"), gcs.uri("gcs-test", "data")
    collect.run(["--speakers", str(corpus / "speakers"), "--noise", str(corpus / "noise"), "--lake", lake_uri])
    entries = lake.read_index(lake_uri)
    assert entries and storage.exists(storage.join(lake_uri, entries[0].clip))
    args = ["--lake", lake_uri, "--output", out_uri, "--target", TARGET, "--window-s", "2", "--hop-s", "2",
            "--split-fractions", "0.5", "0.25", "0.25", "--num-shards", "2"]
    first = prepare.run(args)
    manifest = prepare.run(args)  # re-run into the same gs:// prefix
    names = {u.rsplit("/", 1)[-1] for u in storage.glob(storage.join(out_uri, "*.tfrecord*"))}
    assert names == {n for split in manifest["shards"].values() for n in split}
    assert not storage.glob(storage.join(out_uri, "_staging", "*"))
    assert manifest["run_id"] != first["run_id"]
    assert json.loads(storage.read_text(storage.join(out_uri, "manifest.json")))["run_id"] == manifest["run_id"]
    examples = examples_of(out_uri)
    assert len(examples) == sum(manifest["counts"].values()) > 0
    for ex in examples:
        np.testing.assert_array_equal(ex["mixture"], ex["target"] + ex["other"] + ex["noise"])
