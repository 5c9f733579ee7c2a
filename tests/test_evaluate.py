"""``vsep evaluate`` and the crosstalk recordings it is run on, from real audio.

A tiny lake and prepared set are built from real recordings (collect + prepare,
as in test_train.py); crosstalk folders are built from its test split. The
model has untrained random weights, so the quality checks are on the metric
code: the oracle ratio mask must beat the unprocessed mixture.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vsep import crosstalk, evaluate, model_io
from vsep.config import ModelConfig, TrainConfig

from realdata import TARGET, needs_data, small_lake

pytestmark = needs_data
tf = pytest.importorskip("tensorflow")

TINY = ModelConfig(target=TARGET, depth=3, filters=4, frame_length=256, frame_step=64, fft_length=256,
                   patch_frames=32, chunk_frames=64)
RATE = TINY.sample_rate
SECONDS = 8.0
PREP_ARGS = ["--target", TARGET, "--window-s", "2.0", "--hop-s", "2.0", "--mixtures-per-window", "1",
             "--num-shards", "1"]


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    return small_lake(tmp_path_factory)


@pytest.fixture(scope="module")
def prepared(lake, tmp_path_factory) -> tuple[Path, dict]:
    from beam_jobs import prepare

    out = tmp_path_factory.mktemp("prepared")
    manifest = prepare.run(["--lake", str(lake), "--output", str(out), *PREP_ARGS,
                            "--split-fractions", "0.5", "0.25", "0.25"])
    assert manifest["counts"]["test"] > 0, manifest["counts"]
    return out, manifest


def _model_dir(root: Path, cfg: ModelConfig) -> Path:
    from vsep.model import SeparationModel

    root.mkdir(parents=True)
    model_io.save_weights(SeparationModel(cfg).build_for(), str(root))
    model_io.write_config(str(root), model_io.config_document(cfg, TrainConfig()))
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return _model_dir(tmp_path_factory.mktemp("model") / "m", TINY)


@pytest.fixture(scope="module")
def debates(lake, prepared, tmp_path_factory) -> Path:
    """Two 8 s crosstalk recordings from the test split, in the ``--folder`` layout."""
    _, manifest = prepared
    root = tmp_path_factory.mktemp("debates")
    for seed in (0, 1):
        mix, tgt, rest = crosstalk.build(str(lake), manifest["splits"], TARGET, seconds=SECONDS, rate=RATE, seed=seed)
        crosstalk.write(root / f"debate{seed}", TARGET, mix, tgt, rest, RATE)
    return root


def _evaluate(capsys, out: Path, *args: str, model: Path) -> tuple[int, list[str]]:
    rc = evaluate.main(["--model", str(model), "--output-dir", str(out), "--no-progress", *args])
    return rc, [s for s in capsys.readouterr().err.splitlines() if s.strip()]


def _median(summary: dict, method: str, source: str, metric: str, group: str = "all") -> float:
    return summary["groups"][group][method][source][metric]["median"]


# ---------------------------------------------------------------- crosstalk


def test_crosstalk_is_an_exact_sum_of_real_sources(lake, prepared, debates):
    _, manifest = prepared
    mix, tgt, rest = crosstalk.build(str(lake), manifest["splits"], TARGET, seconds=SECONDS, rate=RATE, seed=0)
    assert len(mix) == len(tgt) == len(rest) == int(SECONDS * RATE)
    assert mix.dtype == tgt.dtype == rest.dtype == np.float32
    np.testing.assert_allclose(mix, tgt + rest, rtol=0, atol=1e-6)
    assert np.max(np.abs(mix)) <= 0.99 + 1e-6
    assert np.std(tgt) > 0.01 and np.std(rest) > 0.01  # both sides talk
    written, rate = sf.read(debates / "debate0" / "mixture.wav", dtype="float32")
    assert rate == RATE
    np.testing.assert_array_equal(written, mix)  # same seed, same recording; FLOAT WAV is lossless
    other, _, _ = crosstalk.build(str(lake), manifest["splits"], TARGET, seconds=SECONDS, rate=RATE, seed=1)
    assert not np.allclose(other, mix)
    with pytest.raises(ValueError, match="test split"):
        crosstalk.build(str(lake), {}, TARGET, seconds=SECONDS, rate=RATE)


# ---------------------------------------------------------------- --folder


def test_evaluate_folder_report_and_oracle_beats_mixture(model_dir, debates, tmp_path, capsys):
    out = tmp_path / "report"
    rc, err = _evaluate(capsys, out, "--folder", str(debates), model=model_dir)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["examples"] == 2 and summary["skipped_for_bsseval"] == 0
    assert summary["target"] == TARGET and summary["sample_rate"] == RATE
    assert summary["audio_s"] == pytest.approx(2 * SECONDS, abs=0.1)
    assert sorted(p.name for p in (out / "examples").iterdir()) == ["debate0.json", "debate1.json"]
    md = (out / "summary.md").read_text()
    for method in ("model", "mixture", "oracle_irm", "oracle_ibm"):
        assert f"| {method} |" in md
        for source in (TARGET, "rest"):
            assert summary["groups"]["all"][method][source]["SDR"]["n"] == 2
    for source in (TARGET, "rest"):
        assert _median(summary, "mixture", source, "SDRi") == 0.0
        # the ideal ratio mask separates; the mixture does not: a wrong metric or mask fails this
        for metric in ("SDR", "SI-SDR"):
            assert _median(summary, "oracle_irm", source, metric) > _median(summary, "mixture", source, metric) + 2
            assert _median(summary, "oracle_irm", source, metric + "i") > 2
    for name in ("debate0", "debate1"):
        row = json.loads((out / "examples" / f"{name}.json").read_text())
        targets = row["museval"]["oracle_irm"]["targets"]
        assert [t["name"] for t in targets] == [TARGET, "rest"]
        frames = targets[0]["frames"]
        assert len(frames) == pytest.approx(SECONDS, abs=1) and frames[1]["time"] == 1.0  # 1 s windows
        assert set(frames[0]["metrics"]) == {"SDR", "SIR", "SAR", "ISR"}
        irm, mixture = row["methods"]["oracle_irm"][TARGET], row["methods"]["mixture"][TARGET]
        assert irm["SDR"] > mixture["SDR"] and irm["SI-SDR"] > mixture["SI-SDR"]
        # the SI-SDR in the report is the one of the written files
        mix, _ = sf.read(debates / name / "mixture.wav", dtype="float32")
        ref, _ = sf.read(debates / name / f"{TARGET}.wav", dtype="float32")
        assert mixture["SI-SDR"] == pytest.approx(evaluate.si_sdr(ref, mix), abs=1e-4)
    assert evaluate.si_sdr(ref, 0.3 * ref) > 80  # scale-invariant
    noise = np.random.default_rng(0).standard_normal(len(ref)).astype(np.float32)
    noise *= np.sqrt(np.sum(ref**2) / np.sum(noise**2) / 10)  # 10 dB below the reference
    assert evaluate.si_sdr(ref, ref + noise) == pytest.approx(10.0, abs=0.3)


def _copy_debate(debates: Path, dest: Path) -> Path:
    shutil.copytree(debates / "debate0", dest / "debate0")
    return dest


def test_silent_reference_is_skipped_for_bsseval(model_dir, debates, tmp_path, capsys):
    folder = _copy_debate(debates, tmp_path / "in")
    rest, _ = sf.read(debates / "debate1" / "rest.wav", dtype="float32")
    (folder / "quiet").mkdir()
    sf.write(folder / "quiet" / "mixture.wav", rest, RATE, subtype="FLOAT")  # only others talk
    sf.write(folder / "quiet" / f"{TARGET}.wav", np.zeros_like(rest), RATE, subtype="FLOAT")
    sf.write(folder / "quiet" / "rest.wav", rest, RATE, subtype="FLOAT")
    out = tmp_path / "report"
    rc, err = _evaluate(capsys, out, "--folder", str(folder), model=model_dir)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["examples"] == 2 and summary["skipped_for_bsseval"] == 1
    row = json.loads((out / "examples" / "quiet.json").read_text())
    assert "museval" not in row
    assert set(row["methods"]["model"]) == {"rest"}  # no metric against a silent target
    assert np.isfinite(row["methods"]["model"]["rest"]["SI-SDR"])
    # the mixture is a perfect 'rest' here: an "improvement" over it would be a meaningless -100 dB
    assert "SI-SDRi" not in row["methods"]["model"]["rest"]
    debate = json.loads((out / "examples" / "debate0.json").read_text())
    assert "SI-SDRi" in debate["methods"]["model"]["rest"]
    assert summary["groups"]["all"]["model"][TARGET]["SDR"]["n"] == 1
    assert summary["groups"]["all"]["model"]["rest"]["SI-SDR"]["n"] == 2


def test_references_of_other_length_are_skipped_with_one_line(model_dir, debates, tmp_path, capsys):
    folder = _copy_debate(debates, tmp_path / "in")
    shutil.copytree(debates / "debate1", folder / "cut")
    rest, _ = sf.read(folder / "cut" / "rest.wav", dtype="float32")
    sf.write(folder / "cut" / "rest.wav", rest[: len(rest) - RATE // 2], RATE, subtype="FLOAT")
    out = tmp_path / "report"
    rc, err = _evaluate(capsys, out, "--folder", str(folder), model=model_dir)
    assert rc == 0
    assert err == ["vsep evaluate: skipped cut: mixture and references differ in length"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["examples"] == 1
    assert sorted(p.name for p in (out / "examples").iterdir()) == ["debate0.json"]
    # a folder with nothing usable left is an error, not an empty report
    shutil.rmtree(folder / "debate0")
    rc, err = _evaluate(capsys, tmp_path / "report2", "--folder", str(folder), model=model_dir)
    assert rc == 2
    assert err[-1] == "vsep evaluate: error: no examples to evaluate" and len(err) == 2
    assert not (tmp_path / "report2" / "summary.json").exists()


# ---------------------------------------------------------------- --data


def test_evaluate_test_split_of_prepared_data(model_dir, prepared, tmp_path, capsys):
    data, manifest = prepared
    out = tmp_path / "report"
    rc, err = _evaluate(capsys, out, "--data", str(data), "--limit", "2", model=model_dir)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["examples"] == min(2, manifest["counts"]["test"])
    assert len(list((out / "examples").iterdir())) == summary["examples"]
    assert any(g.startswith("kind=") for g in summary["groups"])
    assert "nmf" in summary["groups"]["all"]  # the supervised NMF baseline learned from the train split
    assert (out / "nmf_bases.npz").exists()
    page = (out / "report.html").read_text()
    assert page.count("<audio controls") == 9 and page.count("<img") == 3  # best, median, worst
    for label in ("best", "median", "worst"):
        assert (out / "report" / f"{label}.png").stat().st_size > 10_000
    assert summary["timing"]["metrics_s_per_audio_minute"] > 0


def test_evaluate_val_split_with_separate_settings(model_dir, prepared, tmp_path, capsys):
    """``--split val`` scores the validation examples (for choosing settings such as
    ``--shifts`` without touching test); the settings are recorded in the summary."""
    data, manifest = prepared
    assert manifest["counts"]["val"] > 0
    out = tmp_path / "report"
    rc, err = _evaluate(capsys, out, "--data", str(data), "--split", "val", "--no-nmf", "--shifts", "2",
                        "--wiener", model=model_dir)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["split"] == "val" and summary["separate"] == {"wiener": True, "shifts": 2, "target_floor": 0.3,
                                                                        "precision": "auto", "runtime": "auto"}
    val_ids = {ex["id"] for ex in evaluate.examples_from_dataset(str(data), TARGET, RATE, None, "val")}
    test_ids = {ex["id"] for ex in evaluate.examples_from_dataset(str(data), TARGET, RATE, None, "test")}
    scored = {json.loads(p.read_text())["id"] for p in (out / "examples").iterdir()}
    assert scored == val_ids and not scored & test_ids
    assert summary["examples"] == manifest["counts"]["val"]


def test_data_of_another_sample_rate_exits_2(prepared, tmp_path, capsys):
    data, _ = prepared
    model_8k = _model_dir(tmp_path / "m8k", dataclasses.replace(TINY, sample_rate=8000))
    out = tmp_path / "report"
    rc, err = _evaluate(capsys, out, "--data", str(data), model=model_8k)
    assert rc == 2
    assert err == ["vsep evaluate: error: data sample rate 16000 Hz differs from the model's 8000 Hz"]
    assert not (out / "summary.json").exists()


def test_empty_test_split_exits_2(lake, model_dir, tmp_path, capsys):
    from beam_jobs import prepare

    data = tmp_path / "no-test"
    manifest = prepare.run(["--lake", str(lake), "--output", str(data), *PREP_ARGS,
                            "--split-fractions", "0.5", "0.5", "0"])
    assert manifest["counts"]["test"] == 0
    capsys.readouterr()
    out = tmp_path / "report"
    rc, err = _evaluate(capsys, out, "--data", str(data), model=model_dir)
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("vsep evaluate: error: ") and "test split is empty" in err[0], err
    assert not (out / "summary.json").exists()


def test_supervised_nmf_separates_what_its_bases_learned():
    """Bases learned on a low tone (target) and high noise (rest) separate their mixture."""
    from vsep import nmf

    rng = np.random.default_rng(0)
    f, t = 64, 400
    low = np.zeros((f, t), np.float32)
    low[2:6] = rng.uniform(0.5, 1.0, (4, t))
    high = np.zeros((f, t), np.float32)
    high[40:60] = rng.uniform(0.1, 0.5, (20, t))
    sep = nmf.NMFSeparator(nmf.learn_bases(low + 1e-3, 4), nmf.learn_bases(high + 1e-3, 8))
    masks = sep.masks(low + high)
    np.testing.assert_allclose(masks.sum(axis=0), 1.0, atol=1e-4)
    assert masks[0, 2:6].mean() > 0.9 and masks[1, 40:60].mean() > 0.9


def test_markdown_says_when_a_group_has_no_target_to_score():
    rows = [
        {"id": "a", "kind": "speech", "tir_db": 1.0,
         "methods": {"model": {"trump": {"SDR": 5.0, "SDRi": 4.0, "SI-SDR": 3.0}, "rest": {"SDR": 3.0}}}},
        {"id": "b", "kind": "other", "tir_db": float("-inf"),
         "methods": {"model": {"rest": {"SI-SDR": 20.0}}}},
    ]
    text = evaluate.markdown(evaluate.summarise(rows, ("trump", "rest")), "trump")
    assert "### kind=other\n\n(the trump reference is silent in every example of this group)" in text
    assert "| model | 5.00 | 4.00 |" in text  # the scored group keeps its table
