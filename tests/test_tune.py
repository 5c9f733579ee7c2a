"""``vsep tune``: the search space, its errors, a tiny real search, and distributed tuning (chief + 2 workers)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuner import report
from tuner.space import LOSSES, EmptySpaceError, ResolvedSpace, SearchSpace, buildable, depth_name
from vsep import config
from vsep.config import ModelConfig, TrainConfig

from gcs_emulator import free_port
from realdata import ROOT, TARGET, needs_data, small_dataset

kt = pytest.importorskip("keras_tuner")

PREP_ARGS = [
    "--target", TARGET, "--window-s", "2.0", "--hop-s", "2.0", "--mixtures-per-window", "2",
    "--split-fractions", "0.5", "0.25", "0.25", "--num-shards", "2",
]
# a tiny space and tiny trials: the machine has 2 cores shared with other work
TINY_SPACE = [
    "--target", TARGET, "--frame-lengths", "256", "--overlaps", "0.75", "--depths", "2", "3",
    "--base-filters", "2", "4", "--kernel-sizes", "3", "--dropouts", "0.0", "--patch-s", "0.25",
]
TINY_TRAIN = ["--steps-per-epoch", "2", "--validation-steps", "1", "--batch-size", "4", "--shuffle-buffer", "16"]


# ---------------------------------------------------------------- the space


def _valid(fl: int, step: int, depth: int, patch_s: float, base: ModelConfig) -> bool:
    """Ground truth, written out here: ModelConfig.validate() and the U-Net's own divisibility rule."""
    frames = (round(patch_s * base.sample_rate) + 2 * (fl - step)) // step
    cfg = dataclasses.replace(base, frame_length=fl, frame_step=step, fft_length=fl, depth=depth,
                              patch_frames=frames)
    try:
        cfg.validate()
    except ValueError:
        return False
    return (fl // 2) % 2**depth == 0


WIDE = SearchSpace(frame_lengths=(256, 512, 1024, 2048), overlaps=(0.75, 0.5), depths=(1, 2, 3, 4, 5, 6, 7, 8),
                   base_filters=(2, 8), kernel_sizes=(3, 5), dropouts=(0.0, 0.5), patch_s=0.5)


@pytest.mark.parametrize("space", [SearchSpace(), WIDE], ids=["default", "wide"])
def test_random_draws_are_always_valid_and_cover_every_valid_combination(space):
    base = ModelConfig(target=TARGET)
    resolved = ResolvedSpace(space, base, TrainConfig())
    hp = kt.HyperParameters()
    resolved.declare(hp)
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_si_sdri", "max"), hyperparameters=hp, seed=3)
    drawn = set()
    n = len(hp.space) * 150
    for i in range(n):
        values = oracle.populate_space(str(i))["values"]
        mcfg, tcfg = resolved.configs(values)
        mcfg.validate()
        assert buildable(mcfg) is None
        assert mcfg.bins % 2**mcfg.depth == 0 and mcfg.fft_length == mcfg.frame_length
        patch = round(space.patch_s * base.sample_rate)
        assert patch - mcfg.frame_step < mcfg.patch_samples() <= patch  # the same patch length for all
        assert tcfg.loss in LOSSES and space.learning_rate_range[0] <= tcfg.learning_rate <= space.learning_rate_range[1]
        drawn.add((mcfg.frame_length, mcfg.frame_step, mcfg.depth))
    truth = {(fl, int(fl * (1 - ov)), d) for fl, ov, d in itertools.product(space.frame_lengths, space.overlaps,
                                                                             space.depths)
             if _valid(fl, int(fl * (1 - ov)), d, space.patch_s, base)}
    everything = len(space.frame_lengths) * len(space.overlaps) * len(space.depths)
    if space is WIDE:
        assert len(truth) < everything  # the wide space really contains invalid combinations
        assert len(resolved.groups) > 1  # and so conditional depth choices
    assert drawn == truth


def test_bayesian_draws_are_valid(tmp_path):
    """BayesianOptimization proposes from its own model of the space, conditional depths included."""
    # two STFTs allowing different depths (256/64: 6 7; 512/128: 6 7 8), the rest fixed but the learning rate:
    # a small space, as the oracle's Gaussian process is slow to fit on this machine
    space = SearchSpace(frame_lengths=(256, 512), overlaps=(0.75,), depths=(6, 7, 8), base_filters=(8,),
                        kernel_sizes=(3,), dropouts=(0.0,), losses=("l1_mag",))
    resolved = ResolvedSpace(space, ModelConfig(target=TARGET), TrainConfig())
    assert [g[1] for g in resolved.groups] == [(6, 7), (6, 7, 8)]
    hp = kt.HyperParameters()
    resolved.declare(hp)
    oracle = kt.oracles.BayesianOptimizationOracle(objective=kt.Objective("val_si_sdri", "max"), max_trials=5,
                                                   num_initial_points=2, hyperparameters=hp, seed=1)
    oracle._set_project_dir(str(tmp_path), "p")  # where an oracle saves its trials; a tuner sets it
    seen, drawn = 0, set()
    for _ in range(5):
        trial = oracle.create_trial("t0")
        if trial.status != "RUNNING":
            break
        mcfg, _ = resolved.configs(trial.hyperparameters.values)
        assert buildable(mcfg) is None
        drawn.add((mcfg.frame_length, mcfg.depth))
        oracle.update_trial(trial.trial_id, {"val_si_sdri": float(mcfg.depth + mcfg.frame_length / 512)})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        seen += 1
    assert seen == 5 and {fl for fl, _ in drawn} == {256, 512}  # both conditional depth choices used


def test_deepest_drawable_unets_build():
    from vsep.model import build_unet

    resolved = ResolvedSpace(WIDE, ModelConfig(target=TARGET, filters=2), TrainConfig())
    for s in resolved.stfts:
        hp = {"stft": s.label, "filters": 2, "kernel_size": 3, "dropout": 0.0, "loss": "l1_mag",
              "learning_rate": 1e-3}
        for labels, _ in resolved.groups:
            hp[depth_name(labels, len(resolved.groups) == 1)] = max(s.depths)
        mcfg, _ = resolved.configs(hp)
        assert build_unet(mcfg).output_shape == (None, None, mcfg.bins, 2)


def test_space_narrowed_to_nothing_raises():
    with pytest.raises(EmptySpaceError, match="search space is empty"):
        ResolvedSpace(SearchSpace(frame_lengths=(256,), depths=(8,)), ModelConfig(), TrainConfig())
    with pytest.raises(EmptySpaceError, match="no values for depths"):
        ResolvedSpace(SearchSpace(depths=()), ModelConfig(), TrainConfig())


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--frame-lengths", "256", "--depths", "8"], "search space is empty: no depth in {8}"),
        (["--depths", "9"], "search space is empty"),
        (["--overlaps", "0.25"], "search space is empty"),  # frame_step above half the window
        (["--dropouts", "1.0"], "dropouts: 1.0 is not a valid value"),
        (["--learning-rate-range", "0.01", "0.001"], "positive and increasing"),
        (["--depth", "4"], "--depth is searched by vsep tune: give the values to try with --depths"),
    ],
)
def test_impossible_space_is_a_one_line_error_exit_2(tmp_path, capsys, extra, words):
    from tuner import search

    results = tmp_path / "results"
    assert search.main(["--data", str(tmp_path / "no-data"), "--results", str(results), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vsep tune: error: ") and words in err[0], err
    assert not results.exists()


def test_cli_knows_tune():
    from vsep.cli import COMMANDS

    assert COMMANDS["tune"][0] == "tuner.search"
    done = subprocess.run([sys.executable, "-m", "vsep", "tune", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "--frame-lengths" in done.stdout and "val_si_sdri" in done.stdout
    assert "--depth " not in done.stdout  # the searched singular options are hidden


# ---------------------------------------------------------------- real searches


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A tiny prepared data set (2 s windows) made from real recordings by collect + prepare."""
    return small_dataset(tmp_path_factory, PREP_ARGS)


def _in_tiny_space(row: dict) -> bool:
    return (row["frame_length"], row["frame_step"], row["kernel_size"], row["dropout"]) == (256, 64, 3, 0.0) \
        and row["depth"] in (2, 3) and row["filters"] in (2, 4) and row["loss"] in LOSSES


@needs_data
def test_tiny_hyperband_search_writes_a_best_config_that_vsep_train_accepts(data_dir, tmp_path, capsys):
    from tuner import search
    from vsep import model_io, train

    results = tmp_path / "results"
    argv = ["--data", str(data_dir), "--results", str(results), *TINY_SPACE, *TINY_TRAIN,
            "--epochs", "2", "--hyperband-factor", "2", "--quiet"]
    t0 = time.time()
    assert search.main(argv) == 0, capsys.readouterr().err
    searched = time.time() - t0
    project = results / "vsep_tune"
    table = json.loads((project / report.TRIALS_JSON).read_text())
    rows = table["trials"]
    # Hyperband, max 2 epochs, factor 2: bracket 1 runs 2 one-epoch trials and continues the best; bracket 0 two more
    assert len(rows) == 5 and all(r["status"] == "COMPLETED" for r in rows), rows
    assert all(_in_tiny_space(r) for r in rows)
    continued = [r for r in rows if "tuner/trial_id" in r["hyperparameters"]]
    assert len(continued) == 1 and continued[0]["epochs"] == 2
    assert all(r["ran_by"] == ["tuner0"] and r["seconds"] > 0 for r in rows)
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True) and table["objective"] == "val_si_sdri"
    best = json.loads((project / report.BEST).read_text())
    assert best["tune"]["trial_id"] == rows[0]["trial_id"] and best["tune"]["score"] == pytest.approx(max(scores))
    assert best["tune"]["direction"] == "max" and best["tune"]["metrics"]["val_si_sdri"] == pytest.approx(max(scores))
    mcfg = config.from_dict(ModelConfig, best["model"])
    mcfg.validate()
    assert (mcfg.depth, mcfg.filters, mcfg.frame_length) == (rows[0]["depth"], rows[0]["filters"], 256)
    md = (project / report.TRIALS_MD).read_text()
    assert all(f"| {r['trial_id']} | COMPLETED |" in md for r in rows)
    frozen = json.loads((project / report.SPACE).read_text())
    assert frozen["space"]["depths"] == [2, 3] and frozen["combinations"][0]["stft"] == "256/64"
    assert frozen["hyperparameters"]["space"]  # keras-tuner's own description of the space

    # vsep train takes the best config as it is
    model_dir = tmp_path / "model"
    assert train.main(["--config", str(project / report.BEST), "--data", str(data_dir), "--model-dir", str(model_dir),
                       "--epochs", "1", "--steps-per-epoch", "2", "--validation-steps", "1", "--quiet"]) == 0
    trained, tcfg, _ = model_io.read_config(str(model_dir))
    assert trained == mcfg and tcfg.loss == best["train"]["loss"]
    assert tcfg.learning_rate == pytest.approx(best["train"]["learning_rate"])
    assert (model_dir / "model.weights.h5").is_file()

    # the same results folder with another space is refused, and nothing is touched
    before = (project / report.TRIALS_JSON).read_text()
    capsys.readouterr()
    assert search.main([*argv, "--depths", "2"]) == 2
    assert "holds a search over another space (space differ)" in capsys.readouterr().err
    assert (project / report.TRIALS_JSON).read_text() == before
    assert searched < 150


def _run_chief_and_workers(argv: list[str], tmp_path: Path, timeout: float) -> dict[str, tuple[int, str]]:
    """Run ``vsep tune`` as a chief and two workers on 127.0.0.1; returns {tuner id: (rc, output)}."""
    port = free_port()
    base_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    procs = {}
    try:
        for tid in ("chief", "tuner1", "tuner2"):
            log = open(tmp_path / f"{tid}.log", "w")  # noqa: SIM115 - closed below
            procs[tid] = (subprocess.Popen([sys.executable, "-m", "vsep", "tune", *argv], cwd=ROOT,
                                           env={**base_env, "KERASTUNER_TUNER_ID": tid},
                                           stdout=log, stderr=subprocess.STDOUT), log)
        deadline = time.time() + timeout
        for _tid, (proc, _log) in procs.items():
            proc.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc, log in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return {tid: (proc.returncode, (tmp_path / f"{tid}.log").read_text()) for tid, (proc, _) in procs.items()}


@needs_data
def test_distributed_chief_and_two_workers_share_the_trials(data_dir, tmp_path):
    results = tmp_path / "results"
    argv = ["--data", str(data_dir), "--results", str(results), *TINY_SPACE, *TINY_TRAIN,
            "--tuner", "random", "--max-trials", "4", "--epochs", "1", "--quiet"]
    t0 = time.time()
    out = _run_chief_and_workers(argv, tmp_path, timeout=170)
    elapsed = time.time() - t0
    for tid, (rc, text) in out.items():
        assert rc == 0, f"{tid} exited {rc}:\n{text[-3000:]}"
    project = results / "vsep_tune"
    # the chief's oracle recorded every trial, all finished
    oracle = json.loads((project / "oracle.json").read_text())
    assert sorted(oracle["end_order"]) == sorted(oracle["start_order"]) and len(oracle["end_order"]) == 4
    assert not oracle["ongoing_trials"]
    rows = json.loads((project / report.TRIALS_JSON).read_text())["trials"]
    assert sorted(r["trial_id"] for r in rows) == sorted(oracle["end_order"])
    assert all(r["status"] == "COMPLETED" and _in_tiny_space(r) for r in rows)
    # every trial ran exactly once, on a worker (never the chief), and both workers ran some
    by = {r["trial_id"]: r["ran_by"] for r in rows}
    assert all(len(v) == 1 and v[0] in ("tuner1", "tuner2") for v in by.values()), by
    for tid in ("tuner1", "tuner2"):
        mine = sorted(t for t, v in by.items() if v == [tid])
        assert mine, f"{tid} ran no trial: {by}"
        assert f"worker {tid} ran trials {' '.join(mine)}" in out[tid][1]
    assert not list(project.glob("trial_*/run-chief.json"))
    # the chief wrote the best config, and it is the best trial
    best = json.loads((project / report.BEST).read_text())
    assert best["tune"]["trial_id"] == max(rows, key=lambda r: r["score"])["trial_id"]
    config.from_dict(ModelConfig, best["model"]).validate()
    assert "best trial" in out["chief"][1]
    assert elapsed < 170


@needs_data
def test_search_into_gcs_uploads_the_project_and_resumes_on_another_machine(data_dir, gcs, tmp_path, capsys):
    """gs:// results: keras-tuner works in a local folder copied up per trial; a fresh folder resumes from GCS."""
    from tuner import search
    from vsep import storage

    results = gcs.uri("tune-test", "results")
    argv = ["--data", str(data_dir), "--results", results, *TINY_SPACE, *TINY_TRAIN,
            "--tuner", "random", "--epochs", "1", "--quiet"]
    assert search.main([*argv, "--max-trials", "1", "--work-dir", str(tmp_path / "machine-a")]) == 0
    project = storage.join(results, "vsep_tune")
    names = {u[len(project) + 1:] for u in storage.list_files(project)}
    assert {"oracle.json", "trial_0/trial.json", "trial_0/checkpoint.weights.h5", "trial_0/run-tuner0.json",
            report.BEST, report.TRIALS_JSON, report.TRIALS_MD, report.SPACE} <= names, names
    capsys.readouterr()
    # another machine, an empty work folder, one more trial allowed: it resumes the search kept in GCS
    assert search.main([*argv, "--max-trials", "2", "--work-dir", str(tmp_path / "machine-b")]) == 0
    assert "resuming from" in capsys.readouterr().out
    rows = json.loads(storage.read_text(storage.join(project, report.TRIALS_JSON)))["trials"]
    assert sorted(r["trial_id"] for r in rows) == ["0", "1"] and all(r["status"] == "COMPLETED" for r in rows)
    assert storage.exists(storage.join(project, "trial_1", "checkpoint.weights.h5"))
    best = json.loads(storage.read_text(storage.join(project, report.BEST)))
    assert best["tune"]["trial_id"] == rows[0]["trial_id"]
    config.from_dict(ModelConfig, best["model"]).validate()
