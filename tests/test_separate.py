"""Inference: streaming equals whole-input separation, no chunk seams; ``vsep separate`` on real
recordings and bad input; ``vsep export`` served without vsep; the Python API.

The model has untrained random weights: honest for I/O, shapes, lengths and
consistency between the three ways of running it, not for separation quality.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vsep import config, export, model_io, separate
from vsep.config import ModelConfig, TrainConfig

from realdata import DATA, TARGET, needs_data

tf = pytest.importorskip("tensorflow")

# tiny model: 2 cores are shared with other work. Chunk L = 3712 samples, hop H = 2752.
TINY = ModelConfig(target=TARGET, depth=3, filters=4, frame_length=256, frame_step=64, fft_length=256,
                   patch_frames=32, chunk_frames=64)
RATE = TINY.sample_rate
LSB = 1.0 / 32768  # the written WAVs are PCM_16
MP3_48K = DATA / "speakers" / TARGET / "phrases_a_net_worth.mp3"  # 48 kHz stereo
MP3_44K = DATA / "speakers" / TARGET / "quotes_2nd_amendment_people.mp3"  # 44.1 kHz stereo
FLAC_16K = DATA / "speakers" / "libri-1034" / "1034-121119-0000.flac"  # 16 kHz mono
WAV_ODD = DATA / "noise" / "babble" / "noisex_babble.wav"  # 19980 Hz mono


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model directory with untrained random weights."""
    from vsep.model import SeparationModel

    d = tmp_path_factory.mktemp("model") / "m"
    d.mkdir()
    model_io.save_weights(SeparationModel(TINY).build_for(), str(d))
    model_io.write_config(str(d), model_io.config_document(TINY, TrainConfig()))
    return d


@pytest.fixture(scope="module")
def fns(model_dir):
    """``(plain, wiener)`` separate functions of the model directory's model."""
    from vsep import inference

    model = model_io.load(str(model_dir))
    return inference.build_separate_fn(model), inference.build_separate_fn(model, wiener=True)


def _noise(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    env = 0.05 + 0.3 * np.abs(np.sin(np.arange(n) / 900.0))  # level changes, so chunks differ
    return (rng.standard_normal(n) * env).astype(np.float32)


def _odd_blocks(x: np.ndarray):
    sizes, i, k = (1, 7, 333, 0, 1001, 4097, 12345), 0, 0
    while i < len(x):
        s = sizes[k % len(sizes)]
        yield x[i : i + s]
        i, k = i + s, k + 1


def _read(path: Path) -> tuple[np.ndarray, int]:
    y, rate = sf.read(path, dtype="float32")
    return y, rate


def _mono(path: Path) -> tuple[np.ndarray, int]:
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    return x.mean(axis=1), rate


# ---------------------------------------------------------------- inference


def test_chunk_geometry_of_the_tiny_model():
    from vsep import inference

    length, hop = inference.chunk_geometry(TINY)
    assert (length, hop) == (3712, 2752)  # one pass: chunks overlap by a quarter
    for shifts in (2, 3):  # several passes: each hops a whole chunk, their chunks interleave
        assert inference.chunk_geometry(TINY, shifts) == (3712, 3712)
    w = inference.ola_weights(length)
    assert w.shape == (length,) and np.all(w > 0)


L, H = 3712, 2752
SEG8 = 8 * H + 2 * H  # segment of 8 hops + context: where stream emits its first segment


@pytest.mark.parametrize("segment_chunks", [1, 8])
@pytest.mark.parametrize("n", [1, 50, L - 1, L, L + 1, H + 1, SEG8 - 1, SEG8, SEG8 + 1, 5 * SEG8 + 123])
def test_stream_over_odd_blocks_equals_whole_input(fns, n, segment_chunks):
    from vsep import inference

    separate_fn, _ = fns
    x = _noise(n, seed=n)
    whole = separate_fn(tf.constant(x)).numpy()
    assert whole.shape == (2, n) and np.all(np.isfinite(whole))
    pieces = list(inference.stream(_odd_blocks(x), separate_fn, TINY, segment_chunks=segment_chunks))
    streamed = np.concatenate(pieces, axis=1)
    assert streamed.shape == (2, n)
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5)
    if n <= L:
        assert len(pieces) == 1
    if n > 2 * SEG8:
        assert len(pieces) >= 3  # several segments with context were stitched
    assert np.max(np.abs(whole)) > 1e-3  # not trivially silent


def test_wiener_outputs_sum_to_the_input_across_chunk_seams(fns):
    """Ratio masks sum to one, so target + rest must give back the mixture: a seam, a
    misplaced chunk or wrong overlap-add normalisation anywhere would show here."""
    from vsep import inference

    plain, wiener = fns
    n = 9 * H + 777  # 10+ chunks
    x = _noise(n, seed=3)
    out = wiener(tf.constant(x)).numpy()
    np.testing.assert_allclose(out.sum(axis=0), x, rtol=0, atol=1e-5)
    streamed = np.concatenate(list(inference.stream(_odd_blocks(x), wiener, TINY, segment_chunks=2)), axis=1)
    np.testing.assert_allclose(streamed.sum(axis=0), x, rtol=0, atol=1e-5)
    # the model is not trivial: the two outputs differ, and ratio masks are not the plain ones;
    # plain masks with no floor sum to the input too (the rest is the input minus the target)
    assert np.max(np.abs(out[0] - out[1])) > 1e-3
    flat = plain(tf.constant(x)).numpy()
    assert np.max(np.abs(flat[0] - out[0])) > 1e-4
    np.testing.assert_allclose(flat.sum(axis=0), x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n", [0, 1, 5, 40])
def test_mirror_extend_fills_with_the_mirror_image(n):
    from vsep import inference

    x = np.arange(1, n + 1, dtype=np.float32)
    y = inference.mirror_extend(tf.constant(x), 7, 100).numpy()
    assert y.shape == (7 + n + 100,)
    if n == 0:
        assert not np.any(y)
        return
    np.testing.assert_array_equal(y[7 : 7 + n], x)  # the input itself, in place
    cycle = np.concatenate([x, x[::-1]])
    np.testing.assert_array_equal(y, cycle[np.arange(-7, n + 100) % (2 * n)])
    assert np.all(y > 0)  # never digital silence around real audio


def test_shift_offsets_spread_over_a_hop_and_off_the_frame_grid():
    from vsep import inference

    assert inference.shift_offsets(TINY, 1) == [0]
    for shifts in (2, 3, 5):
        offsets = inference.shift_offsets(TINY, shifts)
        _, hop = inference.chunk_geometry(TINY, shifts)
        assert offsets[0] == 0 and len(set(offsets)) == shifts and max(offsets) < hop
        assert all(o % TINY.frame_step for o in offsets[1:])  # every pass sees other STFT frames
    with pytest.raises(ValueError, match="shifts"):
        inference.shift_offsets(TINY, 0)


def _joint_passes_by_hand(model, x: np.ndarray, shifts: int) -> np.ndarray:
    """``[2, n]``: ``shifts`` passes of chunks ``L`` apart, each grid starting its offset before
    the input (mirror padding), every chunk's output weighted by the triangular window, all of
    them summed and divided by the summed weights, chunk by chunk in NumPy."""
    from vsep import inference

    length, hop = inference.chunk_geometry(TINY, shifts)
    n, w = len(x), inference.ola_weights(length)
    total, norm = np.zeros((2, n)), np.zeros(n)
    for o in inference.shift_offsets(TINY, shifts):
        count = max(1, 1 + (n + o - length + hop - 1) // hop)
        padded = inference.mirror_extend_np(x, o, (count - 1) * hop + length - n - o)
        for c in range(count):
            out = model(tf.constant(padded[None, c * hop : c * hop + length]), training=False)[0].numpy()
            lo, hi = c * hop - o, c * hop - o + length  # the chunk's place in the input
            a, b = max(lo, 0), min(hi, n)
            if a < b:
                total[:, a:b] += out[:, a - lo : b - lo] * w[a - lo : b - lo]
                norm[a:b] += w[a - lo : b - lo]
    return total / norm


@pytest.mark.parametrize("n", [50, SEG8 + 1, 3 * SEG8 + 123])
def test_shifts_overlap_add_offset_passes_and_stream_like_the_whole_input(model_dir, fns, n):
    """``shifts=3`` is the joint overlap-add of three passes whose chunk grids start at each offset
    (computed here chunk by chunk), and streaming it still equals the whole-input result."""
    from vsep import inference

    model = model_io.load(str(model_dir))
    shifted = inference.build_separate_fn(model, shifts=3)
    plain, _ = fns
    x = _noise(n, seed=n + 1)
    whole = shifted(tf.constant(x)).numpy()
    assert whole.shape == (2, n) and np.all(np.isfinite(whole))
    np.testing.assert_allclose(whole, _joint_passes_by_hand(model, x, 3), rtol=0, atol=1e-5)
    assert np.max(np.abs(whole - plain(tf.constant(x)).numpy())) > 1e-4  # the passes really differ
    streamed = np.concatenate(list(inference.stream(_odd_blocks(x), shifted, TINY, segment_chunks=1)), axis=1)
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5)
    wiener = inference.build_separate_fn(model, wiener=True, shifts=3)
    np.testing.assert_allclose(wiener(tf.constant(x)).numpy().sum(axis=0), x, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- vsep separate


def _run_separate(capsys, out: Path, files, *extra: str, model: Path) -> tuple[int, list[str], list[str]]:
    rc = separate.main(["--model", str(model), "--output-dir", str(out), "--no-progress", *extra, *map(str, files)])
    cap = capsys.readouterr()
    return rc, [s for s in cap.out.splitlines() if s.strip()], [s for s in cap.err.splitlines() if s.strip()]


def _check_outputs(out: Path, src: Path, frames: int | None = None, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    info = sf.info(str(src))
    folder = out / src.stem
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{TARGET}.wav", "rest.wav", f"{TARGET}.timeline.json",
                                                               f"{TARGET}.timeline.csv"])
    ys = []
    for name in (TARGET, "rest"):
        o = sf.info(str(folder / f"{name}.wav"))
        assert (o.frames, o.samplerate, o.channels) == (frames or info.frames, info.samplerate, channels), (src, name)
        y, _ = _read(folder / f"{name}.wav")
        assert np.all(np.isfinite(y))
        ys.append(y)
    return ys[0], ys[1]


@needs_data
def test_separate_real_formats_keep_length_and_rate(model_dir, tmp_path, capsys):
    """mp3 48 and 44.1 kHz stereo, flac 16 kHz, wav 19980 Hz: exact length and rate out, and (Wiener
    masks) target + rest gives back the input, so no sample is lost, shifted or duplicated."""
    files = [MP3_48K, MP3_44K, FLAC_16K, WAV_ODD]
    rc, out_lines, err = _run_separate(capsys, tmp_path / "out", files, "--wiener", "--mono", model=model_dir)
    assert rc == 0, err
    assert len(out_lines) == len(files)
    for src in files:
        t, r = _check_outputs(tmp_path / "out", src)
        x, rate = _mono(src)
        assert len(x) == len(t)
        assert np.std(t) > 1e-3 and np.std(r) > 1e-3
        if rate == RATE:
            np.testing.assert_allclose(t + r, x, rtol=0, atol=4 * LSB)
        else:  # resampled to 16 kHz and back: content above 8 kHz is gone, the rest must line up
            snr = 10 * np.log10(np.sum(x**2) / np.sum((t + r - x) ** 2))
            assert snr > 15, (src.name, snr)
    assert not list((tmp_path / "out").rglob("*.partial"))


@needs_data
def test_separate_batch_with_bad_files(model_dir, tmp_path, capsys):
    bad_dir = tmp_path / "in"
    bad_dir.mkdir()
    corrupt = bad_dir / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(5000))
    empty = bad_dir / "empty.wav"
    empty.write_bytes(b"")
    text = bad_dir / "notes.txt"
    text.write_text("not audio\n" * 100)
    missing = bad_dir / "missing.wav"
    truncated = bad_dir / "truncated.flac"  # a real FLAC cut in half: fails while streaming
    data = FLAC_16K.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    nan = bad_dir / "nan.wav"  # decodes, but a sample is NaN: fails after the writer opened
    x = _noise(40000)
    x[30000] = np.nan
    sf.write(nan, x, RATE, subtype="FLOAT")
    bad = [corrupt, empty, text, missing, truncated, nan]
    good = [MP3_48K, FLAC_16K]
    out = tmp_path / "out"
    rc, out_lines, err = _run_separate(capsys, out, [good[0], *bad[:3], good[1], *bad[3:]], "--mono",
                                       model=model_dir)
    assert rc == 1
    assert len(err) == len(bad), err
    for line in err:
        assert line.startswith("vsep separate: error: "), line
    for path in bad:  # exactly one line per bad file, naming it
        assert sum(str(path) in line for line in err) == 1, (path, err)
    assert "Traceback" not in "\n".join(err)
    assert len(out_lines) == len(good)
    for src in good:
        _check_outputs(out, src)
    assert not list(out.rglob("*.partial"))
    for path in bad:
        assert not (out / path.stem).exists(), path  # nothing left behind for a failed input


def test_separate_silence_square_wave_and_tiny_files(model_dir, fns, tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    silence = d / "silence.wav"
    sf.write(silence, np.zeros(2 * RATE, np.float32), RATE, subtype="PCM_16")
    i = np.arange(2 * RATE)
    square = np.where((i // 40) % 2 == 0, 1.0, -1.0).astype(np.float32)  # 200 Hz, full scale
    sq16 = d / "square16.wav"
    sf.write(sq16, square, RATE, subtype="FLOAT")
    sq44 = d / "square44.wav"
    sf.write(sq44, np.where((np.arange(88200) // 110) % 2 == 0, 1.0, -1.0).astype(np.float32), 44100, subtype="FLOAT")
    short = np.random.default_rng(1).uniform(-0.5, 0.5, 50).astype(np.float32)  # < one STFT frame (256)
    s16, s44 = d / "short16.wav", d / "short44.wav"
    sf.write(s16, short, RATE, subtype="FLOAT")
    sf.write(s44, short, 44100, subtype="FLOAT")
    files = [silence, sq16, sq44, s16, s44]
    out = tmp_path / "out"
    rc, _, err = _run_separate(capsys, out, files, "--wiener", model=model_dir)
    assert rc == 0, err
    t, r = _check_outputs(out, silence)
    assert np.max(np.abs(t)) <= LSB and np.max(np.abs(r)) <= LSB
    t, r = _check_outputs(out, sq16)
    np.testing.assert_allclose(t + r, square, rtol=0, atol=4 * LSB)  # full scale in, nothing lost
    assert np.std(t) > 0.05 and np.std(r) > 0.05
    t, r = _check_outputs(out, sq44)
    assert np.std(t) > 0.05 and np.std(r) > 0.05
    t, r = _check_outputs(out, s16, frames=50)
    np.testing.assert_allclose(t + r, short, rtol=0, atol=4 * LSB)
    t, r = _check_outputs(out, s44, frames=50)
    assert np.any(t) and np.any(r)
    # and in float, before any 16-bit quantisation: finite everywhere
    plain, wiener = fns
    for fn in (plain, wiener):
        for x in (np.zeros(5000, np.float32), np.tile(square, 2), short):
            y = fn(tf.constant(x)).numpy()
            assert y.shape == (2, len(x)) and np.all(np.isfinite(y))
            if not np.any(x):
                assert np.max(np.abs(y)) < 1e-6


def test_separate_bad_shifts_exits_2(model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = separate.main(["--model", str(model_dir), "-o", str(out), "--no-progress", "--shifts", "0", "x.wav"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0] == "vsep separate: error: shifts must be >= 1, got 0", err
    assert not out.exists()


def test_separate_missing_model_dir_exits_2(tmp_path, capsys):
    out = tmp_path / "out"
    rc = separate.main(["--model", str(tmp_path / "nowhere"), "-o", str(out), "--no-progress", "x.wav"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("vsep separate: error: ") and "does not exist" in err[0], err
    assert not out.exists()


def test_separate_model_of_another_format_version_exits_2(model_dir, tmp_path, capsys):
    other = tmp_path / "m"
    shutil.copytree(model_dir, other)
    doc = json.loads((other / "config.json").read_text())
    doc["format_version"] = 99
    (other / "config.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    rc = separate.main(["--model", str(other), "-o", str(out), "--no-progress", "x.wav"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("vsep separate: error: "), err
    assert "incompatible" in err[0] and "99" in err[0] and "Traceback" not in err[0]
    assert not out.exists()


# ---------------------------------------------------------------- vsep export

SERVE = r"""
import json, sys
import numpy as np, soundfile as sf, tensorflow as tf
export_dir, wav, out = sys.argv[1:4]
m = tf.saved_model.load(export_dir)
x, rate = sf.read(wav, dtype="float32")
res = m.signatures["serving_default"](waveform=tf.constant(x))
info = m.signatures["info"]()
np.save(out + "/target.npy", res["target"].numpy())
np.save(out + "/rest.npy", res["rest"].numpy())
print(json.dumps({
    "vsep_imported": any(k == "vsep" or k.startswith("vsep.") for k in sys.modules),
    "outputs": sorted(res), "rate": rate,
    "sample_rate": int(info["sample_rate"].numpy()), "target": info["target"].numpy().decode(),
}))
"""


@needs_data
def test_export_serves_without_vsep_and_matches_separate(model_dir, tmp_path, capsys):
    """Exported with ``--shifts 2``: the served graph must match ``vsep separate --shifts 2``."""
    from vsep import inference

    export_dir = tmp_path / "export"
    assert export.main(["--model", str(model_dir), "--output", str(export_dir), "--shifts", "2",
                        "--precision", "float32"]) == 0
    capsys.readouterr()
    doc = json.loads((export_dir / "assets" / "config.json").read_text())
    assert doc.pop("separate") == {"wiener": False, "shifts": 2, "target_floor": 0.3, "precision": "float32",
                                  "runtime": "auto"}
    assert doc == json.loads((model_dir / "config.json").read_text())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([sys.executable, "-c", SERVE, str(export_dir), str(FLAC_16K), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res == {"vsep_imported": False, "outputs": ["rest", "target"], "rate": RATE,
                   "sample_rate": RATE, "target": TARGET}
    served = np.stack([np.load(tmp_path / "target.npy"), np.load(tmp_path / "rest.npy")])
    x, _ = _mono(FLAC_16K)
    assert served.shape == (2, len(x)) and np.all(np.isfinite(served))
    floor = config.SeparateConfig().target_floor  # vsep export's default, baked into the graph
    shifted = inference.build_separate_fn(model_io.load(str(model_dir)), shifts=2, target_floor=floor)
    np.testing.assert_allclose(served, shifted(tf.constant(x)).numpy(), rtol=0, atol=1e-5)
    # and what `vsep separate --shifts 2` wrote for the same file (16-bit WAVs)
    rc, _, err = _run_separate(capsys, tmp_path / "out", [FLAC_16K], "--shifts", "2", "--precision", "float32",
                               model=model_dir)
    assert rc == 0, err
    t, r = _check_outputs(tmp_path / "out", FLAC_16K)
    np.testing.assert_allclose(t, served[0], rtol=0, atol=2 * LSB)
    np.testing.assert_allclose(r, served[1], rtol=0, atol=2 * LSB)


def test_bfloat16_separation_and_export_stay_close_to_float32(model_dir, tmp_path, capsys):
    from vsep import inference

    x = _noise(3 * RATE)
    model = model_io.load(str(model_dir))
    f32 = inference.build_separate_fn(model)(tf.constant(x)).numpy()
    bf16 = inference.build_separate_fn(model, precision="mixed_bfloat16")(tf.constant(x)).numpy()
    rel = np.sqrt(np.mean((f32 - bf16) ** 2) / np.mean(f32**2))
    assert bf16.dtype == np.float32 and 0 < rel < 0.05, rel
    auto = model_io.resolve_precision("auto")
    assert auto == ("mixed_bfloat16" if model_io.cpu_has_bf16() else "float32")
    export_dir = tmp_path / "bf16"
    assert export.main(["--model", str(model_dir), "--output", str(export_dir), "--shifts", "1",
                        "--precision", "mixed_bfloat16", "--target-floor", "0"]) == 0
    served = tf.saved_model.load(str(export_dir)).signatures["serving_default"](waveform=tf.constant(x))
    np.testing.assert_allclose(served["target"].numpy(), bf16[0], rtol=0, atol=1e-4)


def test_export_of_a_missing_model_exits_2(tmp_path, capsys):
    assert export.main(["--model", str(tmp_path / "nowhere"), "--output", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vsep export: error: ") and "does not exist" in err[0]
    assert not (tmp_path / "e").exists()


# ---------------------------------------------------------------- Python API


@pytest.fixture(scope="module")
def separator(model_dir):
    import vsep

    return vsep.Separator(str(model_dir))


@needs_data
def test_api_matches_separate_for_mono_and_stereo(separator, model_dir, tmp_path, capsys):
    assert separator.target == TARGET and separator.sample_rate == RATE
    rc, _, err = _run_separate(capsys, tmp_path / "out", [MP3_48K, FLAC_16K], "--mono", model=model_dir)
    assert rc == 0, err
    for src in (MP3_48K, FLAC_16K):
        x, rate = sf.read(src, dtype="float32", always_2d=True)
        wave = x if x.shape[1] > 1 else x[:, 0]
        res = separator.separate(wave, rate, mono=True)
        assert set(res) == {TARGET, "rest"}
        for y in res.values():
            assert y.shape == (len(x),) and y.dtype == np.float32 and np.all(np.isfinite(y))
        t, r = _check_outputs(tmp_path / "out", src)
        np.testing.assert_allclose(res[TARGET], t, rtol=0, atol=2 * LSB)
        np.testing.assert_allclose(res["rest"], r, rtol=0, atol=2 * LSB)
        if x.shape[1] > 1:  # stereo is separated as its channel mean
            mono = separator.separate(x.mean(axis=1), rate)
            np.testing.assert_allclose(mono[TARGET], res[TARGET], rtol=0, atol=1e-6)


@needs_data
def test_separate_keeps_the_input_channels(model_dir, tmp_path, capsys):
    """Stereo in, stereo out: same frames, rate and channels; with Wiener masks each channel's target + rest
    gives that channel back (resampled 48 kHz -> 16 kHz -> 48 kHz: the band below 8 kHz must line up)."""
    info = sf.info(str(MP3_48K))
    assert info.channels == 2
    rc, _, err = _run_separate(capsys, tmp_path / "out", [MP3_48K], "--wiener", model=model_dir)
    assert rc == 0, err
    t, r = _check_outputs(tmp_path / "out", MP3_48K, channels=2)
    x, _ = sf.read(MP3_48K, dtype="float32", always_2d=True)
    assert t.shape == r.shape == x.shape
    for c in range(2):
        snr = 10 * np.log10(np.sum(x[:, c] ** 2) / np.sum((t[:, c] + r[:, c] - x[:, c]) ** 2))
        assert snr > 15, (c, snr)


def test_channels_share_the_masks_of_the_downmix(separator):
    x = _noise(3 * RATE + 17)
    res = separator.separate(np.stack([x, 0.5 * x], axis=1), RATE)
    mono = separator.separate(x, RATE)
    for name in (TARGET, "rest"):
        y = res[name]
        assert y.shape == (len(x), 2) and y.dtype == np.float32
        np.testing.assert_allclose(y[:, 1], 0.5 * y[:, 0], rtol=0, atol=1e-5)  # one mask, both channels
        # masks are level-invariant: those of the downmix (0.75 x) are those of x
        np.testing.assert_allclose(y[:, 0], mono[name], rtol=0, atol=1e-3)
    down = separator.separate(np.stack([x, 0.5 * x], axis=1), RATE, mono=True)
    assert down[TARGET].shape == (len(x),)


def test_api_keeps_length_and_rate_of_synthetic_input(separator):
    x = _noise(44100 + 17)
    for wave in (x, np.stack([x, -0.5 * x], axis=1)):
        res = separator.separate(wave, 44100)
        assert [y.shape for y in res.values()] == [wave.shape, wave.shape]
        assert all(np.all(np.isfinite(y)) and np.std(y) > 1e-3 for y in res.values())


@pytest.mark.parametrize(
    "bad",
    [np.zeros(0, np.float32), np.zeros((0, 2), np.float32), np.zeros((4, 4, 4), np.float32),
     np.array([0.1, np.nan, 0.2], np.float32), np.array([[0.1, 0.1], [np.inf, 0.0]], np.float32)],
    ids=["empty", "empty-stereo", "3d", "nan", "inf"],
)
def test_api_rejects_bad_input(separator, bad):
    with pytest.raises(ValueError):
        separator.separate(bad, RATE)


def test_inputs_sharing_a_stem_get_their_own_folders():
    from vsep.separate import folder_names

    assert folder_names(["x/a.mp3", "y/a.wav", "b.flac"]) == ["a_mp3", "a_wav", "b"]
    assert folder_names(["a.mp3"]) == ["a"]


def test_api_rejects_bad_shifts(model_dir):
    import vsep

    with pytest.raises(ValueError, match="shifts must be >= 1"):
        vsep.Separator(str(model_dir), shifts=0)


def test_prefetch_keeps_order_raises_in_order_and_stops_with_its_consumer():
    import threading

    from vsep.separate import prefetch

    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise ValueError("bad block")

    got = []
    with pytest.raises(ValueError, match="bad block"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1, 2]  # what came before the error arrives first

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    for item in prefetch(endless(), depth=2):
        if item == 3:
            break
    assert not any(t.name == "vsep-reader" and t.is_alive() for t in threading.enumerate())
    assert len(produced) <= 3 + 1 + 2 + 1  # the consumer's items, the queue's depth, one in hand


def test_a_model_carries_its_own_separation_defaults(model_dir, tmp_path, capsys):
    """``vsep export --save-defaults``: the options given become the model's defaults (separate.json), used by
    vsep separate and vsep.Separator unless an option says otherwise; a broken file is one line, exit 2."""
    from vsep import Separator, inference

    own = tmp_path / "model"
    shutil.copytree(model_dir, own)
    assert export.main(["--model", str(own), "--save-defaults", "--target-floor", "0", "--shifts", "1"]) == 0
    capsys.readouterr()
    stored = model_io.separate_defaults(str(own))
    assert (stored.target_floor, stored.shifts) == (0.0, 1)
    assert model_io.separate_defaults(str(model_dir)) == config.SeparateConfig()
    x = _noise(2 * RATE)
    got = Separator(str(own), precision="float32").separate(x, RATE)["rest"]
    by_hand = inference.build_separate_fn(model_io.load(str(own)), shifts=1, target_floor=0.0)(tf.constant(x))
    np.testing.assert_allclose(got, by_hand.numpy()[1], atol=1e-5)
    overridden = Separator(str(own), precision="float32", target_floor=0.3, shifts=2).separate(x, RATE)["rest"]
    floor = inference.build_separate_fn(model_io.load(str(own)), shifts=2, target_floor=0.3)(tf.constant(x))
    np.testing.assert_allclose(overridden, floor.numpy()[1], atol=1e-5)
    (own / model_io.SEPARATE).write_text('{"config": "ModelConfig"}')
    sf.write(tmp_path / "x.wav", x, RATE)
    rc, _, err = _run_separate(capsys, tmp_path / "out", [tmp_path / "x.wav"], model=own)
    assert rc == 2 and len(err) == 1 and "not a SeparateConfig" in err[0]
