"""The output WAVs of ``vsep separate``: one file per source at the input's rate, channels and exact length.

:class:`Writer` resamples each source back from the model's rate (soxr) and writes PCM16 (libsndfile),
one thread per file, one piece behind the model; files appear under their names only when complete
(``.partial`` then rename), and a failed input leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

PIECE = 1 << 17  # samples at the model's rate resampled and written at a time


class Writer:
    """Two WAV files at the input's rate and channel count, resampled back from the model's rate, exact length.

    Resampling and writing run on worker threads, one per file and one piece behind
    the model (soxr, libsndfile and onnxruntime release the GIL), so they overlap
    with the separation of the next piece and with each other (the last piece of a
    long input is written on both cores, not one); an error there is raised by the
    next :meth:`write` or by :meth:`close`.
    """

    def __init__(self, folder: Path, names: tuple[str, ...], rate: int, model_rate: int, frames: int,
                 channels: int = 1) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import soundfile as sf
        import soxr

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.final = [folder / f"{n}.wav" for n in names]
        self.tmp = [folder / f".{n}.wav.partial" for n in names]
        self.channels = channels
        # through Python file objects: libsndfile then does not fsync each file on close (0.3 s for an
        # hour of stereo, with both cores idle); the .partial-then-rename keeps outputs whole
        self._raw = [open(p, "wb") for p in self.tmp]  # noqa: SIM115 - closed in _finish
        self.files = [sf.SoundFile(r, "w", samplerate=rate, channels=channels, subtype="PCM_16", format="WAV")
                      for r in self._raw]
        self.resamplers = [soxr.ResampleStream(model_rate, rate, channels, dtype="float32") for _ in names] \
            if rate != model_rate else None
        self.remaining = [frames] * len(names)  # samples each file still needs
        self._pools = [ThreadPoolExecutor(1, thread_name_prefix="vsep-writer") for _ in names]
        self._pending: list = []

    def write(self, out: np.ndarray, last: bool = False) -> None:
        """``out``: ``[S, k]`` (mono) or ``[S, channels, k]`` at the model's rate, one row per name."""
        self._wait()
        self._pending = [pool.submit(self._write, i, out[i], last) for i, pool in enumerate(self._pools)]

    def _wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:  # every one, so that no thread still writes when a file is closed
            future.exception()
        for future in pending:
            future.result()

    def _write(self, i: int, out: np.ndarray, last: bool) -> None:
        """File ``i`` gets ``out [k]`` or ``[channels, k]``, in pieces small enough for malloc to reuse."""
        k = out.shape[-1]
        for start in range(0, max(k, 1), PIECE):
            x = out[..., start : start + PIECE].T.reshape(-1, self.channels)  # [piece, channels]
            if self.resamplers:
                done = last and start + PIECE >= k
                x = self.resamplers[i].resample_chunk(np.ascontiguousarray(x), last=done).reshape(-1, self.channels)
            n = min(len(x), self.remaining[i])
            if n:
                self.files[i].write(to_pcm16(x[:n]))
            self.remaining[i] -= n

    def close(self, ok: bool) -> list[Path]:
        try:
            self._wait()
        except BaseException:
            ok = False
            raise
        finally:
            for pool in self._pools:
                pool.shutdown()
            self._finish(ok)
        return self.final if ok else []

    def _finish(self, ok: bool) -> None:
        for f, raw, remaining in zip(self.files, self._raw, self.remaining):
            if ok and remaining > 0:  # resampler rounding: pad the last samples
                f.write(np.zeros((remaining, self.channels), dtype=np.int16))
            f.close()
            raw.close()
        if not ok:
            for p in self.tmp:
                p.unlink(missing_ok=True)
            try:  # leave no empty folder behind for an input that failed
                self.folder.rmdir()
            except OSError:
                pass
            return
        for t, p in zip(self.tmp, self.final):
            os.replace(t, p)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float samples -> int16, clipped to [-1, 1] and scaled by 32767 as libsndfile does (twice as fast)."""
    y = np.clip(x, -1.0, 1.0)
    y *= 32767.0
    return np.rint(y, out=y).astype(np.int16)
