"""prepare on real audio: loudness, mixing, splits, determinism, re-runs, multi-process."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from vsep import lake, mixing, schema
from vsep.config import PrepareConfig

from realdata import TARGET, examples_of, needs_data, small_corpus

pytestmark = needs_data

PREP_ARGS = [
    "--target", TARGET, "--window-s", "2.0", "--hop-s", "2.0", "--mixtures-per-window", "3",
    "--split-fractions", "0.5", "0.25", "0.25", "--num-shards", "4", "--reverb-prob", "0.3",
]


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory) -> Path:
    from beam_jobs import collect

    corpus = small_corpus(tmp_path_factory.mktemp("corpus"))
    out = tmp_path_factory.mktemp("lake")
    collect.run(
        ["--speakers", str(corpus / "speakers"), "--noise", str(corpus / "noise"), "--rir", str(corpus / "rir"),
         "--lake", str(out)]
    )
    return out


@pytest.fixture(scope="module")
def prepared(lake_dir, tmp_path_factory) -> tuple[Path, dict]:
    from beam_jobs import prepare

    out = tmp_path_factory.mktemp("prepared")
    manifest = prepare.run(["--lake", str(lake_dir), "--output", str(out), *PREP_ARGS])
    return out, manifest


@pytest.fixture(scope="module")
def examples(prepared) -> list[dict]:
    return examples_of(prepared[0])


def test_every_split_written_and_counted(prepared, examples):
    out, manifest = prepared
    by_split = defaultdict(int)
    for ex in examples:
        by_split[ex["split"]] += 1
    assert all(by_split[s] > 0 for s in mixing.SPLITS), by_split
    assert dict(by_split) == manifest["counts"]
    assert sorted(p.name for p in out.glob("train-*")) == manifest["shards"]["train"]
    assert len(manifest["shards"]["train"]) == 4
    assert not (out / "_staging").exists()


def test_mixture_is_sum_of_sources_and_finite(examples):
    for ex in examples:
        total = ex["target"] + ex["other"] + ex["noise"]
        np.testing.assert_array_equal(ex["mixture"], total)
        assert np.all(np.isfinite(ex["mixture"]))
        assert np.max(np.abs(ex["mixture"])) <= 0.99 + 1e-6
        assert len(ex["mixture"]) == ex["num_samples"] == 2 * 16000


def test_sources_are_loudness_normalised(examples):
    meter = mixing.Loudness(16000)
    target_lufs = PrepareConfig().lufs_target
    checked = 0
    for ex in examples:
        for src in ("target", "other", "noise"):
            gain = ex[f"{src}_gain_db"]
            if gain <= -100:  # absent source
                assert not np.any(ex[src])
                continue
            level = meter(ex[src])
            assert abs(level - (target_lufs + gain + ex["scale_db"])) <= 0.5, (ex["example_id"], src, level)
            checked += 1
    assert checked > 50


def test_kinds_have_the_right_sources(examples):
    seen = set()
    for ex in examples:
        has_t, has_o, has_n = mixing.needs(ex["kind"])
        assert bool(np.any(ex["target"])) == has_t
        assert bool(np.any(ex["other"])) == has_o
        assert bool(np.any(ex["noise"])) == has_n
        seen.add(ex["kind"])
    assert seen == set(schema.KINDS)


def test_splits_are_disjoint_by_recording_and_other_speaker(prepared, examples):
    _, manifest = prepared
    splits = manifest["splits"]
    for key in ("target_recordings", "speech_recordings", "noise_recordings", "other_speakers"):
        sets = [set(splits.get(s, {}).get(key, [])) for s in mixing.SPLITS]
        for i in range(3):
            for j in range(i + 1, 3):
                assert not sets[i] & sets[j], key
    owner = {}
    for split, d in splits.items():
        for key in ("target_recordings", "speech_recordings", "noise_recordings"):
            for rid in d.get(key, []):
                owner[rid] = split
    for ex in examples:
        for key in ("target_id", "other_id", "noise_id"):
            if ex[key]:
                assert owner[ex[key]] == ex["split"], (key, ex["example_id"])


def test_same_seed_same_examples_and_rerun_replaces_shards(lake_dir, prepared, examples, tmp_path):
    """A re-run into the same prefix leaves only the new run's shards; same seed, same data."""
    from beam_jobs import prepare

    out = tmp_path / "rerun"
    prepare.run(["--lake", str(lake_dir), "--output", str(out), *PREP_ARGS, "--seed", "7"])
    first = {p.name for p in out.glob("*.tfrecord*")}
    assert len([n for n in first if n.startswith("train-")]) == 4
    args = [a if a != "4" else "2" for a in PREP_ARGS]  # --num-shards 2
    manifest = prepare.run(["--lake", str(lake_dir), "--output", str(out), *args])
    names = sorted(p.name for p in out.glob("*.tfrecord*"))
    assert names == sorted(n for split in manifest["shards"].values() for n in split)
    assert len([n for n in names if n.startswith("train-")]) == 2
    assert manifest["run_id"] != json.loads((prepared[0] / "manifest.json").read_text())["run_id"]

    def digest(exs):
        return {e["example_id"]: hashlib.sha1(e["mixture"].tobytes()).hexdigest() for e in exs}

    assert digest(examples_of(out)) == digest(examples)


def test_other_seed_other_mixtures(lake_dir, examples, tmp_path):
    from beam_jobs import prepare

    out = tmp_path / "seed7"
    prepare.run(["--lake", str(lake_dir), "--output", str(out), *PREP_ARGS, "--seed", "7"])
    a = {e["example_id"]: e["kind"] + e["other_id"] + e["noise_id"] for e in examples}
    b = {e["example_id"]: e["kind"] + e["other_id"] + e["noise_id"] for e in examples_of(out)}
    assert set(a) == set(b)
    assert sum(a[k] != b[k] for k in a) > len(a) // 3


def test_multiprocess_runner_and_peak_mode(lake_dir, tmp_path):
    from beam_jobs import prepare

    out = tmp_path / "mp"
    manifest = prepare.run(
        ["--lake", str(lake_dir), "--output", str(out), *PREP_ARGS, "--loudness", "peak",
         "--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    )
    exs = examples_of(out)
    assert len(exs) == sum(manifest["counts"].values()) > 0
    for ex in exs:
        if ex["kind"] == "target" and ex["scale_db"] == 0.0:  # target alone, not rescaled
            assert abs(20 * np.log10(np.max(np.abs(ex["target"]))) - (-3.0)) < 0.01


def test_unknown_target_is_a_clear_error(lake_dir, tmp_path, capsys):
    from beam_jobs import prepare

    rc = prepare.main(["--lake", str(lake_dir), "--output", str(tmp_path / "x"), "--target", "nobody"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "'nobody' is not in the lake" in err[0]


def test_lake_index_matches_clips(lake_dir):
    entries = lake.read_index(str(lake_dir))
    assert {e.kind for e in entries} == {"speech", "noise", "rir"}
    for e in entries[:10]:
        x = lake.load_clip(str(lake_dir), e)
        assert len(x) == e.num_samples and e.sample_rate == 16000


def test_corrupt_lake_clip_is_listed_and_skipped(lake_dir, tmp_path):
    import shutil

    from beam_jobs import prepare

    broken = tmp_path / "lake"
    shutil.copytree(lake_dir, broken)
    victim = [e for e in lake.read_index(str(broken)) if e.speaker == TARGET][0]
    (broken / victim.clip).write_bytes(b"fLaC" + b"\x00" * 50)
    out = tmp_path / "out"
    manifest = prepare.run(["--lake", str(broken), "--output", str(out), *PREP_ARGS])
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["clip"] for e in errors] == [victim.clip]
    assert manifest["counters"]["read_failures"] == 1 and sum(manifest["counts"].values()) > 0


def test_room_prob_puts_the_other_voice_in_the_targets_room_and_changes_nothing_else(lake_dir, examples, tmp_path):
    from beam_jobs import prepare

    out = tmp_path / "room"
    manifest = prepare.run(["--lake", str(lake_dir), "--output", str(out), *PREP_ARGS, "--room-prob", "1"])
    dry = {e["example_id"]: e for e in examples}
    wet = {e["example_id"]: e for e in examples_of(out)}
    assert set(dry) == set(wet)
    shared = [k for k, e in wet.items() if e["rir_id"] and e["other_id"]]
    assert shared and manifest["counters"]["mixtures_other_in_room"] == len(shared)
    for k, e in wet.items():
        d = dry[k]
        assert (e["rir_id"], e["other_id"], e["noise_id"], e["kind"]) == (d["rir_id"], d["other_id"], d["noise_id"],
                                                                          d["kind"])
        np.testing.assert_array_equal(e["target"], d["target"])  # the same draws: only the other voice moved
        changed = not np.array_equal(e["other"], d["other"])
        assert changed == (k in shared), k
        np.testing.assert_allclose(e["mixture"], e["target"] + e["other"] + e["noise"], atol=1e-5)
