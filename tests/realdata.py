"""Where the tests find real audio, and small real-audio corpora built from it.

The real recordings live in ``../shared/data`` beside the project (or
``$VSEP_DATA``); tests that need them skip with a clear reason when absent.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("VSEP_DATA") or ROOT.parent / "shared" / "data")
HAVE_DATA = (DATA / "speakers").is_dir()
needs_data = pytest.mark.skipif(
    not HAVE_DATA, reason=f"real audio not found at {DATA} (set VSEP_DATA or put shared/data beside the project)"
)
# the pretrained GE2E speaker encoder's weights travel in Resemblyzer's wheel (make setup downloads it)
WHEEL = ROOT / ".venv" / "wheels" / "Resemblyzer-0.1.4-py3-none-any.whl"
needs_wheel = pytest.mark.skipif(not WHEEL.exists(), reason=f"{WHEEL} is absent (make setup downloads it)")

TARGET = "trump"


def small_corpus(dest: Path) -> Path:
    """Copy a few real recordings into ``dest`` laid out as speakers/, noise/, rir/.

    Trump: 8 quotes (5-17 s) and 3 short phrases; others: 8 LibriSpeech
    readers and the Biden clips; noise: babble and ambient; one room response.
    """
    spk = DATA / "speakers"
    picks = {
        f"speakers/{TARGET}": sorted(spk.joinpath(TARGET).glob("quotes_*"))[:8]
        + sorted(spk.joinpath(TARGET).glob("phrases_*"))[:3],
        "speakers/biden": sorted(spk.joinpath("biden").glob("*")),
        "noise/babble": sorted((DATA / "noise" / "babble").glob("*"))[:4],
        "noise/ambient": sorted((DATA / "noise" / "ambient").glob("*"))[:5],
        "rir/rir": sorted((DATA / "rir").glob("*"))[:1],
    }
    for d in sorted(p for p in spk.iterdir() if p.name.startswith("libri-"))[:8]:
        picks[f"speakers/{d.name}"] = sorted(d.glob("*"))[:2]
    for rel, files in picks.items():
        out = dest / rel
        out.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, out / f.name)
    return dest


def records(data: bytes, gzipped: bool) -> list[bytes]:
    """Records of one TFRecord file's bytes (CRCs checked): no TensorFlow needed."""
    from vsep.shards import read_records

    return list(read_records(data, gzipped))


def examples_of(output) -> list[dict]:
    """Every example of a prepared data set (local folder or ``gs://`` prefix), decoded."""
    from vsep import schema, storage

    output = str(output)
    manifest = json.loads(storage.read_text(storage.join(output, "manifest.json")))
    out = []
    for names in manifest["shards"].values():
        for name in names:
            blob = storage.read_bytes(storage.join(output, name))
            out += [schema.decode(r) for r in records(blob, name.endswith(".gz"))]
    return out


def small_lake(tmp_path_factory) -> Path:
    """A lake collected (by the real collect job) from :func:`small_corpus`."""
    from beam_jobs import collect

    corpus = small_corpus(tmp_path_factory.mktemp("corpus"))
    lake = tmp_path_factory.mktemp("lake")
    collect.run(["--speakers", str(corpus / "speakers"), "--noise", str(corpus / "noise"),
                 "--rir", str(corpus / "rir"), "--lake", str(lake)])
    return lake


def small_dataset(tmp_path_factory, prepare_args: list[str]) -> Path:
    """A tiny prepared data set (train and val not empty) from :func:`small_lake`."""
    from beam_jobs import prepare

    lake = small_lake(tmp_path_factory)
    out = tmp_path_factory.mktemp("prepared")
    manifest = prepare.run(["--lake", str(lake), "--output", str(out), *prepare_args])
    assert all(manifest["counts"].get(s, 0) > 0 for s in ("train", "val")), manifest["counts"]
    return out


def biden_clip(tmp_path: Path, name: str, seconds: float, silent: bool = False) -> Path:
    """``tmp_path/<name>.wav``: ``seconds`` of Biden (one recording, looped) at its own rate, or its silence."""
    import numpy as np
    import soundfile as sf

    x, rate = sf.read(sorted((DATA / "speakers" / "biden").glob("*.wav"))[0], dtype="float32", always_2d=True)
    x = np.tile(x.mean(axis=1), 20)[: int(seconds * rate)]
    path = tmp_path / f"{name}.wav"
    sf.write(path, np.zeros_like(x) if silent else x, rate)
    return path
