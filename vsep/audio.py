"""Audio decoding, conversion and encoding: pure functions on numpy arrays.

Waveforms are float32 numpy arrays of shape ``[samples]`` (mono) or
``[samples, channels]``; values are in [-1, 1] full scale.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
from collections.abc import Iterator

import numpy as np


class AudioError(ValueError):
    """A recording that cannot be decoded or used; the message is one line."""


@contextlib.contextmanager
def muted_stderr() -> Iterator[None]:
    """Silence file descriptor 2 around a decoder call (libsndfile's mpg123 prints "Note: ..." lines there).

    Only for short, synchronous library calls: anything written to fd 2
    meanwhile, by any thread, is dropped. ``VSEP_QUIET`` unset (``--verbose``)
    leaves it alone.
    """
    import os

    if not os.environ.get("VSEP_QUIET"):
        yield
        return
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def decode(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, int]:
    """Decode an encoded file (wav, flac, ogg, mp3, ... ) to ``([samples, channels], rate)``.

    libsndfile (through soundfile) reads wav/flac/ogg/mp3; anything else falls
    back to ffmpeg when it is on PATH.
    """
    if not data:
        raise AudioError(f"{name}: empty file")
    import soundfile as sf

    try:
        with muted_stderr():
            audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as sf_error:  # noqa: BLE001 - libsndfile raises several types
        audio, rate = _decode_ffmpeg(data, name, sf_error)
    if audio.shape[0] == 0:
        raise AudioError(f"{name}: no samples (zero-length audio)")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{name}: decoded samples contain NaN or inf")
    return audio, int(rate)


def _decode_ffmpeg(data: bytes, name: str, first: Exception) -> tuple[np.ndarray, int]:
    ffmpeg = shutil.which("ffmpeg")
    reason = str(first).splitlines()[0] if str(first) else type(first).__name__
    if ffmpeg is None:
        raise AudioError(f"{name}: cannot decode ({reason})")
    proc = subprocess.run(
        [ffmpeg, "-v", "error", "-i", "pipe:0", "-f", "wav", "-acodec", "pcm_f32le", "pipe:1"],
        input=data,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{name}: cannot decode ({msg[-1] if msg else reason})")
    import soundfile as sf

    audio, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return audio, rate


def to_mono(audio: np.ndarray) -> np.ndarray:
    """``[samples, channels]`` or ``[samples]`` to mono ``[samples]`` (channel mean)."""
    if audio.ndim == 1:
        return audio.astype(np.float32, copy=False)
    return audio.mean(axis=1, dtype=np.float32)


def resample(x: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    """Resample ``[samples]`` or ``[samples, channels]`` with soxr (high quality)."""
    if rate_in == rate_out:
        return x.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(x, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def shift_voice(x: np.ndarray, percent: float) -> np.ndarray:
    """``[samples]`` resampled so that, played at the same rate, pitch and formants move by ``percent``.

    A sound-alike voice (a shorter or longer vocal tract); a higher voice is shorter.
    """
    return resample(x, 1.0 + percent / 100.0, 1.0)


def trim_silence(x: np.ndarray, rate: int, top_db: float = 45.0, frame_s: float = 0.02) -> np.ndarray:
    """Cut leading and trailing frames whose RMS is ``top_db`` below the loudest frame.

    ``x``: ``[samples]``. Returns a view; all-silent input gives an empty array.
    """
    frame = max(1, int(rate * frame_s))
    n = len(x) // frame
    if n == 0:
        return x[:0] if not np.any(x) else x
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-20)
    peak = rms.max()
    if peak <= 1e-9:
        return x[:0]
    loud = np.nonzero(20 * np.log10(rms / peak) > -top_db)[0]
    start = loud[0] * frame
    end = len(x) if loud[-1] == n - 1 else (loud[-1] + 1) * frame
    return x[start:end]


def encode(x: np.ndarray, rate: int, fmt: str = "FLAC", subtype: str = "PCM_16") -> bytes:
    """Encode mono ``[samples]`` (or ``[samples, channels]``) to FLAC/WAV bytes."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def load(data: bytes, rate: int, name: str = "<bytes>") -> np.ndarray:
    """Decode, downmix and resample: encoded bytes to mono ``[samples]`` at ``rate``."""
    audio, rate_in = decode(data, name)
    return resample(to_mono(audio), rate_in, rate)
