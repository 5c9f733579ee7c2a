"""Damaged data sets: one clear line and exit 2 before any model is built, never a traceback.

Each case damages a copy of a real prepared data set the way it happens: a
partial copy, a flipped byte, a missing or emptied shard, a broken manifest,
records that are valid TFRecords but not valid examples (wrong types and
lengths, NaN samples, sources that do not sum), and a training loss that
becomes NaN.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from vsep import schema, shards

from realdata import TARGET, examples_of, needs_data, small_dataset

pytestmark = needs_data

MODEL_ARGS = ["--target", TARGET, "--depth", "3", "--filters", "4", "--patch-frames", "16",
              "--frame-length", "256", "--frame-step", "64", "--fft-length", "256"]  # fmt: skip
TRAIN_ARGS = ["--batch-size", "4", "--validation-steps", "2", "--shuffle-buffer", "16", "--quiet",
              "--epochs", "1", "--steps-per-epoch", "2"]  # fmt: skip
PREP_ARGS = ["--target", TARGET, "--window-s", "2.0", "--hop-s", "2.0", "--mixtures-per-window", "2",
             "--split-fractions", "0.5", "0.25", "0.25", "--num-shards", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return small_dataset(tmp_path_factory, PREP_ARGS)


@pytest.fixture()
def copy(data_dir, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VSEP_CACHE", str(tmp_path / "cache"))  # every case checksums afresh
    out = tmp_path / "data"
    shutil.copytree(data_dir, out)
    return out


def manifest_of(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def train_shard(d: Path) -> Path:
    return d / manifest_of(d)["shards"]["train"][0]


def one_line_failure(main, argv, capsys, *expected: str) -> str:
    capsys.readouterr()
    rc = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert rc == 2, captured
    assert len(err) == 1 and "Traceback" not in captured.err, err
    for text in expected:
        assert text in err[0], err[0]
    return err[0]


def train(copy: Path, tmp_path: Path, capsys, *expected: str, extra: tuple[str, ...] = ()) -> Path:
    from vsep import train as train_mod

    model_dir = tmp_path / "model"
    one_line_failure(train_mod.main, ["--data", str(copy), "--model-dir", str(model_dir), *MODEL_ARGS,
                                      *TRAIN_ARGS, *extra], capsys, *expected)
    assert not model_dir.exists() or not any(model_dir.iterdir()), "nothing written for a damaged data set"
    return model_dir


def test_intact_copy_trains(copy, tmp_path):
    from vsep import train as train_mod

    rc = train_mod.main(["--data", str(copy), "--model-dir", str(tmp_path / "m"), *MODEL_ARGS, *TRAIN_ARGS])
    assert rc == 0 and (tmp_path / "m" / "model.weights.h5").exists()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_truncation_is_named(copy, tmp_path, capsys, seed):
    shard = train_shard(copy)
    data = shard.read_bytes()
    shard.write_bytes(data[: random.Random(seed).randrange(0, len(data))])
    train(copy, tmp_path, capsys, shard.name, "truncated")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_byte_flip_is_named(copy, tmp_path, capsys, seed):
    shard = train_shard(copy)
    data = bytearray(shard.read_bytes())
    data[random.Random(seed).randrange(len(data))] ^= 0xFF
    shard.write_bytes(bytes(data))
    train(copy, tmp_path, capsys, shard.name, "altered")


def test_missing_and_empty_shards(copy, tmp_path, capsys):
    shard = train_shard(copy)
    shard.write_bytes(b"")
    train(copy, tmp_path, capsys, shard.name, "0 bytes")
    shard.unlink()
    train(copy, tmp_path, capsys, shard.name, "missing")


def test_manifest_that_is_not_json_or_not_a_manifest(copy, tmp_path, capsys):
    (copy / "manifest.json").write_text("{ this is not json")
    train(copy, tmp_path, capsys, "manifest.json", "not a vsep manifest")
    (copy / "manifest.json").write_text(json.dumps({"hello": 1}))
    train(copy, tmp_path, capsys, "not a vsep manifest")


def rewrite(copy: Path, change) -> Path:
    """Rewrite the first train shard with ``change(example dict) -> bytes`` applied to its first record,
    and record the new shard's size and checksum in the manifest, as a careless tool would."""
    m = manifest_of(copy)
    shard = train_shard(copy)
    records = list(shards.read_records(shard.read_bytes(), shard.name.endswith(".gz")))
    records[0] = change(schema.decode(records[0]))
    with shards.ShardWriter(str(shard), shard.name.endswith(".gz")) as w:
        for r in records:
            w.write(r)
    m["shard_info"]["train"][0].update({k: v for k, v in w.info.to_dict().items() if k != "name"})
    (copy / "manifest.json").write_text(json.dumps(m))
    return shard


def _nan(ex: dict) -> bytes:
    return schema.encode({**ex, "mixture": np.full_like(ex["mixture"], np.nan)})


def _not_a_sum(ex: dict) -> bytes:
    return schema.encode({**ex, "target": ex["target"] * 2})


def _short(ex: dict) -> bytes:
    """Waveforms one sample shorter than num_samples says (encode refuses: num_samples patched afterwards)."""
    n = ex["num_samples"]
    raw = schema.encode({**ex, "num_samples": n - 1, **{k: ex[k][:-1] for k in schema.WAVEFORMS}})
    return raw.replace(schema._feature(n - 1), schema._feature(n), 1)


def _wrong_type(ex: dict) -> bytes:
    """The int features (sample_rate, num_samples) stored as floats: a well-formed Example of another schema."""
    entries = [(k, schema._feature(np.asarray(ex[k], "<f4").tobytes())) for k in schema.WAVEFORMS]
    entries += [(k, schema._feature(str(ex[k]))) for k in schema.STRINGS]
    entries += [(k, schema._feature(float(ex[k]))) for k in (*schema.FLOATS, *schema.INTS)]
    features = b"".join(schema._field(1, schema._field(1, k.encode()) + schema._field(2, v)) for k, v in entries)
    return schema._field(1, features)


def _garbage(ex: dict) -> bytes:
    return b"\x00\x01garbage"


@pytest.mark.parametrize("damage, expected", [
    (_nan, "NaN or inf"), (_not_a_sum, "not the sum of its sources"), (_short, "samples, num_samples says"),
    (_wrong_type, "wrong type"), (_garbage, "not a vsep example"),
])  # fmt: skip
def test_invalid_records_are_named_with_their_index(copy, tmp_path, capsys, damage, expected):
    shard = rewrite(copy, damage)
    train(copy, tmp_path, capsys, shard.name, "record 0", expected)


def test_evaluate_names_a_damaged_test_shard_before_loading_a_model(copy, tmp_path, capsys):
    from vsep import evaluate

    shard = copy / manifest_of(copy)["shards"]["test"][0]
    shard.write_bytes(shard.read_bytes()[:-100])
    out = tmp_path / "eval"
    one_line_failure(evaluate.main, ["--data", str(copy), "--output-dir", str(out), "--no-nmf", "--no-progress"],
                     capsys, shard.name, "truncated")
    assert not out.exists()


def test_checksums_are_remembered_and_a_changed_file_is_checked_again(copy, tmp_path, capsys):
    from vsep.manifest import _cache_file, read_manifest, verify_shards

    m = read_manifest(str(copy))
    verify_shards(m, ("train",))
    cache = json.loads(Path(_cache_file(m)).read_text())
    assert sorted(Path(u).name for u in cache) == m["shards"]["train"]
    shard = train_shard(copy)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))  # same size, new modification time: checksummed again
    with pytest.raises(shards.ShardError, match="altered"):
        verify_shards(m, ("train",))


def test_nan_loss_stops_with_one_line_and_writes_no_nan_checkpoint(copy, tmp_path, capsys):
    from vsep import train as train_mod

    model_dir = tmp_path / "m"
    line = one_line_failure(train_mod.main, ["--data", str(copy), "--model-dir", str(model_dir), *MODEL_ARGS,
                                             *TRAIN_ARGS, "--epochs", "3", "--learning-rate", "1e38"],
                            capsys, "loss became", "epoch 1, step")
    assert "no checkpoint was written" in line
    assert not (model_dir / "checkpoints" / "state.json").exists() and not (model_dir / "model.weights.h5").exists()


def test_lake_clip_changed_after_collect_is_named_and_skipped(tmp_path_factory, tmp_path):
    import soundfile as sf

    from beam_jobs import prepare
    from vsep import lake

    from realdata import small_lake

    root = small_lake(tmp_path_factory)
    victim = next(e for e in lake.read_index(str(root)) if e.speaker == TARGET and e.num_samples > 32000)
    x, rate = sf.read(root / victim.clip, dtype="float32")
    sf.write(root / victim.clip, x[: len(x) // 2], rate, format="FLAC")  # a valid, shorter clip
    out = tmp_path / "out"
    manifest = prepare.run(["--lake", str(root), "--output", str(out), *PREP_ARGS])
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["clip"] for e in errors] == [victim.clip]
    assert "truncated or replaced after collect" in errors[0]["error"]
    assert manifest["counters"]["read_failures"] == 1 and sum(manifest["counts"].values()) > 0
    assert all(ex["target_id"] != victim.recording_id for ex in examples_of(out))


def _train_ok(copy: Path, tmp_path: Path, capsys) -> tuple[str, list[dict]]:
    from vsep import train as train_mod

    model_dir = tmp_path / "skip"
    capsys.readouterr()
    rc = train_mod.main(["--data", str(copy), "--model-dir", str(model_dir), *MODEL_ARGS, *TRAIN_ARGS,
                         "--skip-corrupt"])
    out = capsys.readouterr()
    assert rc == 0, out
    history = [json.loads(x) for x in (model_dir / "history.jsonl").read_text().splitlines()]
    return out.out.strip().splitlines()[-1], history


def test_skip_corrupt_trains_on_the_rest_of_a_truncated_shard(copy, tmp_path, capsys):
    shard = train_shard(copy)
    records = manifest_of(copy)["shard_info"]["train"][0]["records"]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    last, history = _train_ok(copy, tmp_path, capsys)
    left_out = history[-1]["skipped_records"]
    assert 0 < left_out <= records and f"{left_out} damaged records left out" in last


def test_skip_corrupt_leaves_out_exactly_the_invalid_records(copy, tmp_path, capsys):
    import tensorflow as tf

    from vsep.config import ModelConfig, TrainConfig
    from vsep.dataset import make_dataset
    from vsep.manifest import check_compatible, read_manifest

    def two_bad(ex: dict) -> bytes:
        return _nan(ex)

    shard = rewrite(copy, two_bad)
    m = read_manifest(str(copy))
    cfg = ModelConfig(target=TARGET, depth=3, filters=4, patch_frames=16, frame_length=256, frame_step=64,
                      fft_length=256)
    files = check_compatible(m, cfg, "train", skip_corrupt=True)
    assert m["skipped"] == {str(shard): {"bad": [0], "readable": None, "missing": False}}
    n = sum(int(x.shape[0]) for x, _ in make_dataset(files, cfg, TrainConfig(), training=False, batch_size=4,
                                                     skipped=m["skipped"]))
    assert n == m["counts"]["train"] - 1
    for x, y in make_dataset(files, cfg, TrainConfig(), training=False, batch_size=4, skipped=m["skipped"]):
        assert bool(tf.reduce_all(tf.math.is_finite(x))) and bool(tf.reduce_all(tf.math.is_finite(y)))
    last, history = _train_ok(copy, tmp_path, capsys)
    assert history[-1]["skipped_records"] == 1 and "1 damaged records left out" in last


def test_lake_clip_replaced_by_one_of_the_same_length_is_named(tmp_path_factory, tmp_path):
    import soundfile as sf

    from beam_jobs import prepare
    from vsep import lake

    from realdata import small_lake

    root = small_lake(tmp_path_factory)
    victim = next(e for e in lake.read_index(str(root)) if e.speaker == TARGET)
    assert len(victim.clip_sha1) == 40
    x, rate = sf.read(root / victim.clip, dtype="float32")
    sf.write(root / victim.clip, -x, rate, format="FLAC")  # same length, other content
    out = tmp_path / "out"
    prepare.run(["--lake", str(root), "--output", str(out), *PREP_ARGS])
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["clip"] for e in errors] == [victim.clip]
    assert "no longer matches the lake index" in errors[0]["error"]
