"""collect on real audio: bad input is reported and skipped, http sources, manifests."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vsep import lake

from realdata import DATA, TARGET, needs_data

pytestmark = needs_data


def real_files(n: int = 2) -> list[Path]:
    return sorted((DATA / "speakers" / TARGET).glob("quotes_*"))[:n]


def run_collect(tmp: Path, args: list[str]) -> tuple[int, list[dict], list[dict]]:
    from beam_jobs import collect

    out = tmp / "lake"
    rc = collect.main([*args, "--lake", str(out)])
    index = [json.loads(x) for x in (out / "index.jsonl").read_text().splitlines()] if rc == 0 else []
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()] if rc == 0 else []
    return rc, index, errors


def test_bad_files_are_reported_and_skipped(tmp_path):
    spk = tmp_path / "in" / TARGET
    spk.mkdir(parents=True)
    good = real_files(2)
    for f in good:
        shutil.copy(f, spk / f.name)
    flac = sorted((DATA / "speakers").glob("libri-*/*.flac"))[0].read_bytes()
    (spk / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" + bytes(range(256)) * 8)
    (spk / "empty.mp3").write_bytes(b"")
    (spk / "truncated.flac").write_bytes(flac[:200])
    sf.write(spk / "zero_length.wav", np.zeros(0, dtype=np.float32), 16000)
    sf.write(spk / "silence.wav", np.zeros(48000, dtype=np.float32), 16000)
    t = np.arange(3200) / 16000
    sf.write(spk / "too_short.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    (tmp_path / "notes.txt").write_text("not audio at all\n")
    manifest = tmp_path / "extra.csv"
    manifest.write_text(
        "speaker,uri\n"
        f"{TARGET},{tmp_path / 'does_not_exist.wav'}\n"
        f"{TARGET},notes.txt\n"  # relative to the manifest's folder
    )
    rc, index, errors = run_collect(tmp_path, ["--speakers", str(tmp_path / "in"), "--manifest", str(manifest)])
    assert rc == 0
    assert sorted(Path(e["source_uri"]).name for e in index) == sorted(f.name for f in good)
    bad = {Path(e["uri"]).name: e for e in errors}
    assert set(bad) == {
        "corrupt.wav", "empty.mp3", "truncated.flac", "zero_length.wav", "silence.wav",
        "too_short.wav", "does_not_exist.wav", "notes.txt",
    }
    assert bad["does_not_exist.wav"]["stage"] == "read"
    assert "digital silence" in bad["silence.wav"]["error"]
    assert all("\n" not in e["error"] and e["error"] for e in errors)
    for e in index:  # the good clips are whole and playable
        x, rate = sf.read(tmp_path / "lake" / e["clip"])
        assert rate == 16000 and len(x) == e["num_samples"] > 16000


def test_decodes_any_format_rate_and_channels(tmp_path):
    """mp3 stereo 44.1/48 kHz, flac 16 kHz mono, wav at 8 kHz stereo: all mono at the lake rate."""
    spk = tmp_path / "in" / "mixed"
    spk.mkdir(parents=True)
    src = real_files(1)[0]
    shutil.copy(src, spk / "a.mp3")
    shutil.copy(sorted((DATA / "speakers").glob("libri-*/*.flac"))[0], spk / "b.flac")
    x, rate = sf.read(src, always_2d=True)
    st = np.stack([x[:, 0], 0.5 * x[:, 0]], axis=1)[::6]  # crude 8 kHz stereo
    sf.write(spk / "c.wav", st, rate // 6)
    rc, index, errors = run_collect(tmp_path, ["--speakers", str(tmp_path / "in"), "--sample-rate", "22050"])
    assert rc == 0 and not errors and len(index) == 3
    for e in index:
        y, r = sf.read(tmp_path / "lake" / e["clip"], always_2d=True)
        assert r == 22050 and y.shape[1] == 1 and e["speaker"] == "mixed"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture()
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_collect_over_http(tmp_path, http_root):
    root, url = http_root
    files = real_files(3)
    for f in files:
        shutil.copy(f, root / f.name)
    noise = sorted((DATA / "noise" / "babble").glob("*"))[0]
    shutil.copy(noise, root / noise.name)
    manifest = tmp_path / "m.csv"
    lines = ["# a comment line", "speaker,uri,start,end,licence,kind"]
    lines += [f"{TARGET},{url}/{f.name},,,test,speech" for f in files]
    lines += [f"{TARGET},{url}/{files[0].name},1.0,4.0,cut,speech"]  # a cut of the same file
    lines += [f"babble,{url}/{noise.name},,,,noise", f"{TARGET},{url}/missing.mp3,,,,speech"]
    manifest.write_text("\n".join(lines) + "\n")
    rc, index, errors = run_collect(tmp_path, ["--manifest", str(manifest)])
    assert rc == 0
    assert len(index) == 5 and [Path(e["uri"]).name for e in errors] == ["missing.mp3"]
    assert "HTTP 404" in errors[0]["error"]
    cut = [e for e in index if e["start_s"] == 1.0][0]
    assert cut["duration_s"] <= 3.0 and cut["licence"] == "cut"
    whole = {e["recording_id"] for e in index if e["start_s"] is None}
    local = {lake.recording_id(f.read_bytes(), lake.ManifestRow(TARGET, str(f))) for f in files}
    assert local <= whole  # same bytes over http, same content id


def test_rerun_is_idempotent(tmp_path):
    spk = tmp_path / "in" / TARGET
    spk.mkdir(parents=True)
    for f in real_files(2):
        shutil.copy(f, spk / f.name)
    shutil.copy(real_files(1)[0], spk / "duplicate.mp3")  # same bytes twice
    _, first, _ = run_collect(tmp_path, ["--speakers", str(tmp_path / "in")])
    _, second, _ = run_collect(tmp_path, ["--speakers", str(tmp_path / "in")])
    assert first == second and len(first) == 2


def test_manifest_errors_name_the_line(tmp_path):
    with pytest.raises(ValueError, match="line 3"):
        lake.parse_manifest("speaker,uri\nok,a.wav\nbad name,b.wav\n")
    with pytest.raises(ValueError, match="header"):
        lake.parse_manifest("who,where\nx,y\n")
    from beam_jobs import collect

    assert collect.main(["--lake", str(tmp_path / "l")]) == 2
