"""A quiet terminal: no library chatter on stderr for --help and ordinary runs; --verbose shows it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from realdata import DATA, ROOT, TARGET, needs_data

NOISE = ("FutureWarning", "apitools", "oneDNN", "cpu_feature_guard", "Logging handler created",
         "semi_persistent_directory", "Discarding unparseable")  # fmt: skip


def vsep(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS", "VSEP_QUIET")}
    return subprocess.run([sys.executable, "-m", "vsep", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(n in line for n in NOISE)]


@pytest.mark.parametrize("command", ["collect", "prepare", "train", "tune", "separate", "evaluate", "crosstest",
                                     "export", "demo"])
def test_help_is_quiet(command):
    r = vsep(command, "--help")
    assert r.returncode == 0 and "usage: vsep" in r.stdout
    assert r.stderr == "", r.stderr


@needs_data
def test_ordinary_runs_are_quiet_and_verbose_is_not(tmp_path):
    clip = sorted((DATA / "speakers" / TARGET).glob("quotes_*"))[0]
    r = vsep("separate", "--output-dir", str(tmp_path / "out"), "--no-progress", str(clip))
    assert r.returncode == 0, r.stderr
    assert noise(r.stderr) == [] and r.stderr.strip() == "", r.stderr
    speakers = tmp_path / "speakers"
    for name, pattern in ((TARGET, "quotes_*"), ("biden", "*")):
        (speakers / name).mkdir(parents=True)
        for f in sorted((DATA / "speakers" / name).glob(pattern))[:3]:
            (speakers / name / f.name).symlink_to(f)
    lake = str(tmp_path / "lake")
    workers = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    r = vsep("collect", "--speakers", str(speakers), "--lake", lake, *workers)
    assert r.returncode == 0 and noise(r.stderr) == [], r.stderr
    r = vsep("prepare", "--lake", lake, "--output", str(tmp_path / "data"), "--target", TARGET, *workers)
    assert r.returncode == 0 and noise(r.stderr) == [], r.stderr
    assert "examples_train" in r.stdout
    r = vsep("prepare", "--lake", lake, "--output", str(tmp_path / "data"), "--target", TARGET, "--verbose", *workers)
    assert r.returncode == 0 and noise(r.stderr), "--verbose shows the libraries' messages"


@needs_data
def test_corrupt_mp3_is_cannot_decode_without_decoder_chatter(tmp_path):
    import random

    src = (DATA / "speakers" / TARGET / "quotes_canada.mp3").read_bytes()
    flipped = bytearray(src)
    rng = random.Random(0)
    for _ in range(2000):
        flipped[rng.randrange(1000, len(flipped))] = rng.randrange(256)
    files = {"truncated.mp3": src[:20000], "flipped.mp3": bytes(flipped), "garbage.mp3": os.urandom(30000)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    r = vsep("separate", "--no-progress", "-o", str(tmp_path / "out"), *(str(tmp_path / n) for n in files))
    assert r.returncode == 1  # one input failed, the others were written
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "garbage.mp3: cannot decode" in err[0], err
    assert "does not exist" not in r.stderr and "Note:" not in r.stderr and "Xing" not in r.stderr
    assert (tmp_path / "out" / "truncated" / f"{TARGET}.wav").exists()
    assert (tmp_path / "out" / "flipped" / f"{TARGET}.wav").exists()
