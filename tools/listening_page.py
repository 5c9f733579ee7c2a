"""A listening page: a model on a real recording without references, as HTML.

    .venv/bin/python tools/listening_page.py [--model DIR] [--input FILE] [--output runs/listen]

Separates the whole recording (default: the 8-minute real crosstalk in
``../shared/data/crosstalk``) and writes ``OUT/index.html`` with players for
the input, the target and the rest (whole recording, Ogg Vorbis) and, for a
few excerpts, spectrograms of the three with their own players, so anyone can
hear what the model does on real material. The target's timeline (when it
speaks, :mod:`vsep.timeline`) is drawn as a lane under the whole recording's
spectrogram and listed as segments that jump the input's player there; it is
also written as ``OUT/<target>.timeline.json`` and ``.csv``. The audio is derived from the
recording and stays under ``runs/`` (not in git).
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "crosstalk" / "trump_and_another_speaker_8min.mp3"


def stft_mag(x: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """``[samples]`` -> magnitude ``[frames, bins]`` (Hann window)."""
    win = np.hanning(n_fft).astype(np.float32)
    frames = 1 + max(0, len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    return np.abs(np.fft.rfft(x[idx] * win, axis=1))


def write_ogg(path: Path, y: np.ndarray, rate: int) -> None:
    """Ogg Vorbis, written in one-second blocks (libsndfile's Vorbis encoder crashes on long single writes)."""
    import soundfile as sf

    y = np.clip(y, -1, 1).astype(np.float32)
    with sf.SoundFile(path, "w", rate, 1, format="OGG", subtype="VORBIS") as f:
        for i in range(0, len(y), rate):
            f.write(y[i : i + rate])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: the bundled model)")
    p.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    p.add_argument("--output", type=Path, default=ROOT / "runs" / "listen")
    p.add_argument("--excerpts", type=int, default=4, help="excerpts with spectrograms")
    p.add_argument("--excerpt-s", type=float, default=20.0)
    args = p.parse_args(argv)
    if not args.input.is_file():
        print(f"listening_page: {args.input}: no such file", file=sys.stderr)
        return 2
    import vsep
    from vsep import audio, timeline
    from vsep.report import _spectrogram_png, timeline_png

    t0 = time.perf_counter()
    sep = vsep.Separator(args.model)
    rate = sep.sample_rate
    x = audio.load(args.input.read_bytes(), rate, str(args.input))
    out = sep.separate(x, rate)
    took = time.perf_counter() - t0
    tracks = {"input": x, sep.target: out[sep.target], "rest": out["rest"]}
    args.output.mkdir(parents=True, exist_ok=True)
    for name, y in tracks.items():
        write_ogg(args.output / f"{name}.ogg", y, rate)
    dur = len(x) / rate
    tracker = timeline.Tracker(rate)
    tracker.update(np.stack([out[sep.target], out["rest"]]))
    json_path, _ = timeline.write(args.output, sep.target, tracker, timeline.THRESHOLD, dur)
    segs = json.loads(json_path.read_text())["segments"]
    timeline_png(args.output / "timeline.png", stft_mag(x, hop=1024), rate, 1024, {sep.target: segs})
    spoken = sum(s_["end"] - s_["start"] for s_ in segs)
    jumps = " ".join(f"<a href='#' onclick=\"var a=document.getElementById('input');a.currentTime={s_['start']};"
                     f"a.play();return false\">{s_['start']:.1f}-{s_['end']:.1f} s</a>" for s_ in segs)
    energy = {k: 10 * np.log10(np.mean(v**2) + 1e-12) for k, v in tracks.items()}
    model = args.model or "the bundled model (vsep/models/default)"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>vsep: listen</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}audio{width:320px}"
        "td{padding:4px 10px}</style></head><body>",
        f"<h1>vsep on a real recording: {html.escape(args.input.name)}</h1>",
        f"<p>{dur / 60:.1f} minutes, no separated references exist: listen. Model: {html.escape(str(model))}; "
        f"separated in {took:.1f} s including start-up. Levels: input {energy['input']:.1f} dB, "
        f"{html.escape(sep.target)} {energy[sep.target]:.1f} dB, rest {energy['rest']:.1f} dB (mean power).</p>",
        "<h2>The whole recording</h2><table><tr>"
        + "".join(f"<td>{html.escape(n)}<br><audio id='{html.escape(n)}' controls preload='none' "
                  f"src='{html.escape(n)}.ogg'></audio></td>" for n in tracks) + "</tr></table>",
        f"<h2>When {html.escape(sep.target)} speaks</h2><img src='timeline.png' width='900' alt='timeline'>",
        f"<p>{len(segs)} segments, {spoken:.0f} s of {dur:.0f} s (threshold {timeline.THRESHOLD}; "
        f"<a href='{html.escape(sep.target)}.timeline.csv'>CSV</a>, <a href='{html.escape(sep.target)}.timeline.json'>"
        f"JSON</a>). Click to play the input from there: {jumps}</p>",
    ]
    n_ex = int(args.excerpt_s * rate)
    starts = np.linspace(0, max(0, len(x) - n_ex), args.excerpts).astype(int)
    for i, s in enumerate(starts):
        seg = {k: v[s : s + n_ex] for k, v in tracks.items()}
        png = args.output / f"excerpt{i}.png"
        _spectrogram_png(png, [(f"{k} (dB)", stft_mag(v), False) for k, v in seg.items()], rate, 128)
        parts.append(f"<h2>Excerpt {i + 1}: {s / rate:.0f}-{(s + n_ex) / rate:.0f} s</h2><table><tr>")
        for k, v in seg.items():
            name = f"excerpt{i}_{k}.ogg"
            write_ogg(args.output / name, v, rate)
            parts.append(f"<td>{html.escape(k)}<br><audio controls preload='none' src='{name}'></audio></td>")
        parts.append(f"</tr></table><img src='{png.name}' width='900' alt='spectrograms'>")
    parts.append("</body></html>")
    (args.output / "index.html").write_text("\n".join(parts))
    print(f"listening_page  {args.output / 'index.html'}  ({dur:.0f} s separated in {took:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
