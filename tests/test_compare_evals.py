"""tools/compare_evals.py: paired comparison of two evaluate runs."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import compare_evals  # noqa: E402


def write_run(folder: Path, values: dict[str, tuple[str, float]]) -> str:
    (folder / "examples").mkdir(parents=True)
    for key, (kind, v) in values.items():
        row = {"id": key, "kind": kind, "tir_db": 0.0,
               "methods": {"model": {"trump": {"SDRi": v}, "rest": {"SDRi": 0.0}}, "mixture": {"trump": {"SDRi": 0.0}}}}
        (folder / "examples" / f"{key}.json").write_text(json.dumps(row))
    return str(folder)


def test_paired_difference_and_interval(tmp_path):
    rng = np.random.default_rng(1)
    base = {f"m{i}": ("voices" if i % 2 else "noise", float(v)) for i, v in enumerate(rng.normal(3, 2, 60))}
    better = {k: (kind, v + 1.0 + 0.1 * rng.normal()) for k, (kind, v) in base.items()}
    better["only-b"] = ("voices", 99.0)  # not in A: not paired
    a, b = write_run(tmp_path / "a", base), write_run(tmp_path / "b", better)
    for folder in (a, b):  # an example whose target reference is silent: only "rest" is scored, not paired
        row = {"id": "silent", "kind": "noise", "tir_db": 0.0, "methods": {"model": {"rest": {"SDRi": 50.0}}}}
        (Path(folder) / "examples" / "silent.json").write_text(json.dumps(row))
    res = compare_evals.compare(a, b)
    assert res["all"]["n"] == 60 and res["voices"]["n"] == 30 and res["noise"]["n"] == 30
    assert res["all"]["mean_diff"] == pytest.approx(1.0, abs=0.05)
    assert 0.8 < res["all"]["ci_low"] < 1.0 < res["all"]["ci_high"] < 1.2
    assert res["all"]["wins"] == 1.0
    same = compare_evals.compare(str(tmp_path / "a"), str(tmp_path / "a"))
    assert same["all"]["mean_diff"] == 0.0 and same["all"]["wins"] == 0.0


def test_noise_interval_spans_zero():
    rng = np.random.default_rng(2)
    a = rng.normal(3, 2, 80)
    s = compare_evals.paired(a, a + rng.normal(0, 1, 80))
    assert s["ci_low"] < 0 < s["ci_high"]


def test_disjoint_runs_are_one_line_and_exit_2(tmp_path, capsys):
    a = write_run(tmp_path / "a", {"x": ("noise", 1.0)})
    b = write_run(tmp_path / "b", {"y": ("noise", 2.0)})
    assert compare_evals.main([a, b]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "share no scored examples" in err[0]


def test_rest_is_compared_when_asked(tmp_path):
    a = write_run(tmp_path / "a", {"x": ("noise", 1.0), "y": ("voices", 2.0)})
    rows = {"x": ("noise", 1.0), "y": ("voices", 2.0)}
    b = write_run(tmp_path / "b", rows)
    for key in rows:  # B's rest scores 0.5 dB better; its target is the same as A's
        path = Path(b) / "examples" / f"{key}.json"
        row = json.loads(path.read_text())
        row["methods"]["model"]["rest"]["SDRi"] = 0.5
        path.write_text(json.dumps(row))
    assert compare_evals.compare(a, b)["all"]["mean_diff"] == 0.0
    rest = compare_evals.compare(a, b, source="rest")
    assert rest["all"]["n"] == 2 and rest["all"]["mean_diff"] == pytest.approx(0.5)
