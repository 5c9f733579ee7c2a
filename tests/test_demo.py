"""``vsep demo``, the README's main command, end to end on a small real corpus.

The full run (``make demo``, the whole of ``../shared/data``) takes about
3 minutes and is measured in BENCHMARKS.md; here the same code runs on a few
recordings with a tiny training run, and the paths it prints must exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import soundfile as sf

from vsep import demo

from realdata import DATA, TARGET, needs_data


def corpus(dest: Path) -> Path:
    """Links to real recordings, enough for a 60/20/20 split to fill val and test:
    24 target quotes, 24 LibriSpeech readers, a few noises and one room response."""
    spk = DATA / "speakers"
    picks = {f"speakers/{TARGET}": sorted(spk.joinpath(TARGET).glob("quotes_*"))[:24],
             "noise/babble": sorted((DATA / "noise" / "babble").glob("*"))[:3],
             "noise/nonspeech": sorted((DATA / "noise" / "nonspeech").glob("*"))[:4],
             "rir/rir": sorted((DATA / "rir").glob("*"))[:1]}
    for d in sorted(p for p in spk.iterdir() if p.name.startswith("libri-"))[:24]:
        picks[f"speakers/{d.name}"] = sorted(d.glob("*"))[:1]
    for rel, files in picks.items():
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            (dest / rel / f.name).symlink_to(f)
    return dest


@needs_data
def test_demo_runs_every_stage_and_prints_paths_that_exist(tmp_path, capsys):
    data = corpus(tmp_path / "data")
    work = tmp_path / "work"
    rc = demo.main(["--data", str(data), "--workdir", str(work), "--workers", "1", "--epochs", "1", "--steps", "2",
                    "--eval-examples", "2", "--crosstalk-s", "12", "--split-fractions", "0.6", "0.2", "0.2"])
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    lines = {m.group(1): m.group(2).split() for m in re.finditer(r"^demo  (\w+) +(.*)$", out, re.M)}
    for key in ("lake", "dataset", "model", "report", "crosstalk", "separated"):
        assert key in lines, (key, out[-2000:])
    mixture, separated = lines["crosstalk"][0], lines["separated"]
    assert separated[0].endswith(f"debate/{TARGET}.wav") and separated[1].endswith("debate/rest.wav")
    frames = sf.info(mixture).frames
    assert frames == 12 * sf.info(mixture).samplerate
    for path in separated:
        assert sf.info(path).frames == frames, path  # written, same length as the recording
    for path in lines["report"]:
        assert Path(path).exists(), path
    assert (work / "model" / "config.json").exists()  # the short training run wrote its model


@needs_data
def test_demo_with_a_target_not_in_the_data_exits_2_with_one_line(tmp_path, capsys):
    data = corpus(tmp_path / "data")
    rc = demo.main(["--data", str(data), "--workdir", str(tmp_path / "work"), "--workers", "1", "--target", "nobody"])
    stderr = capsys.readouterr().err
    err = [s for s in stderr.splitlines() if s.startswith("vsep demo")]
    assert rc == 2 and "Traceback" not in stderr
    assert err == ["vsep demo: error: target speaker 'nobody' is not in the lake (it has 25 speakers)"]
