"""Whole sources held out (prepare --val/--test-holdout) and the cross-source set built from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vsep import lake, mixing

from realdata import TARGET, examples_of, needs_data, small_lake

pytestmark = needs_data

HOLDOUT = ["--test-holdout", f"{TARGET}/phrases_*", "biden/*", "ambient/*", "rir/*",
           "--val-holdout", f"{TARGET}/quotes_b*"]  # fmt: skip
ARGS = ["--target", TARGET, "--window-s", "2.0", "--hop-s", "2.0", "--mixtures-per-window", "2",
        "--num-shards", "4", "--min-window-s", "0.5"]  # fmt: skip


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory) -> Path:
    return small_lake(tmp_path_factory)


@pytest.fixture(scope="module")
def prepared(lake_dir, tmp_path_factory) -> tuple[Path, dict]:
    from beam_jobs import prepare

    out = tmp_path_factory.mktemp("held_out")
    return out, prepare.run(["--lake", str(lake_dir), "--output", str(out), *ARGS, *HOLDOUT])


def test_held_out_sources_are_only_in_their_split(lake_dir, prepared):
    out, manifest = prepared
    by_id = {e.recording_id: e for e in lake.read_index(str(lake_dir))}
    name = lambda rid: mixing.source_name(by_id[rid].speaker, by_id[rid].source_uri)  # noqa: E731
    phrases = {rid for rid in by_id if name(rid).startswith(f"{TARGET}/phrases_")}
    assert phrases and phrases <= set(manifest["splits"]["test"]["target_recordings"])
    biden = {rid for rid, e in by_id.items() if e.speaker == "biden"}
    assert biden <= set(manifest["splits"]["test"]["speech_recordings"])
    ambient = {rid for rid, e in by_id.items() if e.speaker == "ambient"}
    seen = [ex for ex in examples_of(out) if ex["split"] != "test"]
    assert seen, "train and val have examples"
    for ex in seen:  # nothing held out for test reaches train or val, rooms included
        assert ex["target_id"] not in phrases and ex["other_id"] not in biden and ex["noise_id"] not in ambient
        assert ex["rir_id"] == ""
    val_targets = {ex["target_id"] for ex in seen if ex["split"] == "val" and ex["target_id"]}
    assert val_targets and all(name(r).startswith(f"{TARGET}/quotes_b") for r in val_targets)


def test_manifest_records_every_shard_with_size_and_checksum(prepared):
    import hashlib

    out, manifest = prepared
    for split, infos in manifest["shard_info"].items():
        assert [i["name"] for i in infos] == manifest["shards"][split]
        for info in infos:
            data = (out / info["name"]).read_bytes()
            assert len(data) == info["bytes"] and hashlib.sha256(data).hexdigest() == info["sha256"]
    records = sum(i["records"] for infos in manifest["shard_info"].values() for i in infos)
    assert records == sum(manifest["counts"].values()) == len(examples_of(out))


def test_a_pattern_that_matches_nothing_is_one_line(lake_dir, tmp_path, capsys):
    from beam_jobs import prepare

    rc = prepare.main(["--lake", str(lake_dir), "--output", str(tmp_path / "x"), "--test-holdout", "nobody/*"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "'nobody/*' matches no recording" in err[0]
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def crossset(lake_dir, prepared, tmp_path_factory) -> Path:
    from vsep import crosstest

    out = tmp_path_factory.mktemp("xtest")
    rc = crosstest.main(["--lake", str(lake_dir), "--data", str(prepared[0]), "--output", str(out),
                         "--per-condition", "3", "--seconds", "4"])
    assert rc == 0
    return out


def test_crosstest_mixes_only_held_out_recordings(crossset, lake_dir):
    folders = sorted(p for p in crossset.iterdir() if p.is_dir())
    assert [f.name for f in folders] == [f"{c}-{i:03d}" for c in ("noise", "room", "soundalike", "voices")
                                         for i in range(3)]
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["condition"] == folder.name.split("-")[0] and meta["tir_db"] in (-5.0, 0.0, 5.0)
        assert meta["target_sources"] and all("/phrases_" in s for s in meta["target_sources"])
        if meta["condition"] in ("voices", "room"):
            assert meta["other_sources"] and all("/biden/" in s for s in meta["other_sources"])
        if meta["condition"] == "soundalike":
            assert 8 <= abs(meta["shift_percent"]) <= 15
            assert meta["other_sources"] and all("/phrases_" in s for s in meta["other_sources"])
        mix, rate = sf.read(folder / "mixture.wav", dtype="float32")
        tgt, _ = sf.read(folder / f"{TARGET}.wav", dtype="float32")
        rest, _ = sf.read(folder / "rest.wav", dtype="float32")
        assert rate == 16000 and len(mix) == 4 * 16000
        np.testing.assert_allclose(mix, tgt + rest, atol=1e-6)
        assert np.sum(tgt**2) > 0 and np.sum(rest**2) > 0
        if np.isfinite(meta["tir_db"]):  # the target sits tir_db above the interference (before any clip guard)
            ratio = 10 * np.log10(np.sum(tgt**2) / np.sum(rest**2))
            assert abs(ratio - meta["tir_db"]) < 4.0, (folder.name, ratio)
    info = json.loads((crossset / "crosstest.json").read_text())
    assert info["config"]["split"] == "test" and info["sources"]["rir"]


def test_evaluate_scores_each_condition_with_pesq_and_stoi(crossset, tmp_path):
    from vsep import evaluate

    out = tmp_path / "eval"
    rc = evaluate.main(["--folder", str(crossset), "--output-dir", str(out), "--no-nmf", "--no-progress",
                        "--shifts", "1"])
    assert rc == 0
    groups = json.loads((out / "summary.json").read_text())["groups"]
    for c in ("noise", "room", "soundalike", "voices"):
        target = groups[f"kind={c}"]["oracle_irm"][TARGET]
        assert target["SDRi"]["n"] == 3 and target["SDRi"]["median"] > 3  # the oracle separates
        assert 1.0 <= target["PESQ"]["median"] <= 4.65 and 0 < target["STOI"]["median"] <= 1
        assert target["STOIi"]["median"] > 0
    assert "PESQ" in (out / "summary.md").read_text()


def test_missing_condition_is_one_line(lake_dir, tmp_path, capsys):
    from beam_jobs import prepare
    from vsep import crosstest

    data = tmp_path / "no_noise_held_out"
    prepare.run(["--lake", str(lake_dir), "--output", str(data), *ARGS, "--test-holdout", f"{TARGET}/phrases_*"])
    capsys.readouterr()
    rc = crosstest.main(["--lake", str(lake_dir), "--data", str(data), "--output", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "condition 'voices' needs held-out voices" in err[0]
    rc = crosstest.main(["--lake", str(lake_dir), "--data", str(data), "--output", str(tmp_path / "y"),
                         "--split", "val"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "holds no whole sources out for val" in err[0]


def test_target_alone_reports_what_the_model_keeps_of_each_reference(crossset, tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "tools"))
    import target_alone

    from vsep.api import Separator

    rows = target_alone.target_alone(crossset, Separator())
    assert len(rows) >= 10  # every condition's references (none is silent)
    for r in rows:
        # masks are at most 1 and the target floor 0.3 keeps at least -10.5 dB (windowing adds a little)
        assert -11.0 < r["kept_db"] < 0.5 and np.isfinite(r["snr_db"])
    assert len({round(r["kept_db"], 3) for r in rows}) > 1  # measured per example, not a constant
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, str(root / "tools" / "target_alone.py"), str(empty)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "no example" in proc.stderr
