"""``vsep separate``: recordings in, one WAV per source out.

    vsep separate [--model DIR] [--enroll NAME=CLIP ...] --output-dir OUT FILE...

Inputs and ``OUT`` may be local or ``gs://``. For each input writes
``OUT/<input stem>/<target>.wav`` and ``OUT/<input stem>/rest.wav`` with the
input's length, sample rate and channels (``--mono``: one channel): the masks
are computed on the downmix and shape every channel. Any length, format (libsndfile's, ffmpeg's),
rate and channel count: the input is streamed in blocks, downmixed, resampled
to the model's rate, separated by :mod:`vsep.inference` (fixed-size chunks,
overlap-add) and resampled back, so memory stays bounded for hour-long files
(a ``gs://`` input is first copied to a temporary file, streamed). A file that fails is reported on
one line and skipped; the others are written; the exit status is 1 if any
file failed.

A speaker-conditioned model (``ModelConfig.embed_dim > 0``) extracts whoever
``--enroll NAME=CLIP`` names (10-60 s of that person alone; :mod:`vsep.enroll`),
``OUT/<stem>/<NAME>.wav``; two or more ``--enroll`` are debate mode: one WAV per
voice plus ``rest.wav``, summing to the input. ``--enroll NAME`` without a clip
names a voice stored with the model (its default target needs no option).
Every voice gets ``<NAME>.timeline.json/.csv``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsep import config
from vsep.enroll import enroll_option
from vsep.writer import Writer

BLOCK_S = 10.0  # seconds of input read at a time


@dataclass
class Opened:
    """An input opened for streaming."""

    path: str
    frames: int
    rate: int
    cleanup: Callable[[], None]
    channels: int = 1


def open_input(path: str) -> Opened:
    """Check that ``path`` is readable audio; undecodable formats go through ffmpeg to a temp WAV.

    A ``gs://`` (or http) input is copied to a temporary file first.
    """
    import soundfile as sf

    from vsep import storage
    from vsep.audio import AudioError, muted_stderr

    if storage.is_remote(path):
        return _open_remote(path)
    if not os.path.isfile(path):
        raise AudioError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file")
    try:
        with muted_stderr():
            info = sf.info(path)
        return Opened(path, int(info.frames), int(info.samplerate), lambda: None, int(info.channels))
    except Exception as first:  # noqa: BLE001 - libsndfile raises several types
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise AudioError(f"{path}: cannot decode ({_first_line(first)})") from None
        tmp = tempfile.mkdtemp(prefix="vsep-")
        wav = os.path.join(tmp, "input.wav")
        proc = subprocess.run(
            [ffmpeg, "-v", "error", "-nostdin", "-y", "-i", path, "-acodec", "pcm_f32le", wav],
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0 or not os.path.exists(wav):
            shutil.rmtree(tmp, ignore_errors=True)
            said = proc.stderr.decode(errors="replace").strip().splitlines()  # ffmpeg's reason: libsndfile's
            reason = said[-1].split(": ", 1)[-1] if said else _first_line(first)  # may claim a missing file
            raise AudioError(f"{path}: cannot decode (ffmpeg: {reason[:200]})") from None
        info = sf.info(wav)
        return Opened(wav, int(info.frames), int(info.samplerate), lambda: shutil.rmtree(tmp, ignore_errors=True),
                      int(info.channels))


def _open_remote(uri: str) -> Opened:
    """:func:`open_input` of a temporary local copy of ``uri``; errors name ``uri``."""
    from vsep import storage
    from vsep.audio import AudioError

    if not storage.exists(uri):
        raise AudioError(f"{uri}: no such file")
    stack = ExitStack()
    try:
        local = stack.enter_context(storage.local_file(uri))
        try:
            opened = open_input(local)
        except AudioError as e:
            raise AudioError(str(e).replace(local, uri)) from None
    except BaseException:
        stack.close()
        raise
    stack.callback(opened.cleanup)
    return Opened(opened.path, opened.frames, opened.rate, stack.close, opened.channels)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def read_blocks(opened: Opened, model_rate: int, progress=None, channels: bool = False) -> Iterator[np.ndarray]:
    """Blocks at the model's rate (streamed resampling): mono ``[k]``, or ``[channels, k]`` with ``channels``."""
    import soundfile as sf
    import soxr

    from vsep.audio import AudioError, muted_stderr

    width = opened.channels if channels else 1
    resampler = soxr.ResampleStream(opened.rate, model_rate, width, dtype="float32") \
        if opened.rate != model_rate else None
    block = max(1, int(BLOCK_S * opened.rate))
    with muted_stderr():
        f = sf.SoundFile(opened.path)
    with f:
        while True:
            with muted_stderr():
                data = f.read(block, dtype="float32", always_2d=True)
            last = len(data) < block
            x = data if channels else data.mean(axis=1, keepdims=True).astype(np.float32)
            if not np.all(np.isfinite(x)):
                raise AudioError(f"{opened.path}: samples contain NaN or inf")
            if progress is not None:
                progress.update(len(data))
            if resampler:
                x = resampler.resample_chunk(np.ascontiguousarray(x), last=last).reshape(-1, width)
            yield np.ascontiguousarray(x.T) if channels else x[:, 0]
            if last:
                return


def prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """``items`` produced on a worker thread up to ``depth`` ahead (decoding and resampling the next
    input block overlap with the separation of this one; soxr and libsndfile release the GIL). An
    exception there is raised here, in order; a consumer that stops early stops the thread."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put((done, e))

    worker = threading.Thread(target=produce, name="vsep-reader", daemon=True)
    worker.start()
    try:
        while True:
            item, error = q.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join()


def folder_names(paths: Sequence[str]) -> list[str]:
    """Output folder per input: its stem, or ``<stem>_<ext>`` when two inputs share a stem."""
    stems = [Path(p).stem for p in paths]
    return [
        f"{stem}_{Path(p).suffix.lstrip('.')}" if stems.count(stem) > 1 and Path(p).suffix else stem
        for p, stem in zip(paths, stems)
    ]


def separate_file(
    path: str, out_dir: str | Path, separate_fn, cfg, show_progress: bool = True, name: str | None = None,
    channels_fn=None, timeline_threshold: float | None = None, names: Sequence[str] | None = None,
    timeline_quiet_db: float | None = None,
) -> list[str]:
    """Separate one file into ``out_dir/<name or stem>/{target,rest}.wav``; raises AudioError for bad input.

    ``names``: the sources the functions return (:attr:`vsep.runtime.Served.names`; default target, rest).

    ``path`` and ``out_dir`` may be local or ``gs://`` (the WAVs are written
    locally and uploaded once complete). A multichannel input keeps its
    channels when ``channels_fn`` (:attr:`vsep.runtime.Served.channels`) is given, else it is downmixed. Returns the paths written.
    """
    from tqdm import tqdm

    from vsep import inference, storage, timeline

    folder = storage.join(str(out_dir), name or Path(path).stem)
    opened = open_input(path)
    try:
        if opened.frames == 0:
            from vsep.audio import AudioError

            raise AudioError(f"{path}: no samples (zero-length audio)")
        multi = channels_fn is not None and opened.channels > 1
        with storage.local_folder(folder) as local:
            names = tuple(names or (cfg.target, "rest"))
            writer = Writer(Path(local), names, opened.rate, cfg.sample_rate, opened.frames,
                            opened.channels if multi else 1)
            ok = False
            try:
                with tqdm(total=opened.frames, unit="smp", unit_scale=True, desc=Path(path).name, leave=False,
                          disable=not show_progress, file=sys.stderr) as bar:
                    blocks = prefetch(read_blocks(opened, cfg.sample_rate, bar, channels=multi))
                    pieces = inference.stream(blocks, channels_fn if multi else separate_fn, cfg)
                    tracker = timeline.Tracker(cfg.sample_rate)
                    pending = next(pieces)
                    for piece in pieces:
                        writer.write(pending)
                        tracker.update(pending)
                        pending = piece
                    writer.write(pending, last=True)
                    tracker.update(pending)
                ok = True
            finally:
                files = writer.close(ok)
            if ok and timeline_threshold is not None:
                for i, voice in enumerate(names[:-1]):
                    files += timeline.write(Path(local), voice, tracker, timeline_threshold,
                                            opened.frames / opened.rate, source=i,
                                            quiet_db=timeline.QUIET_DB if timeline_quiet_db is None else timeline_quiet_db)
    finally:
        opened.cleanup()
    return [storage.join(folder, f.name) for f in files]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vsep separate", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", metavar="FILE", help="recordings to separate")
    p.add_argument("--model", help="model directory (default: the bundled model)")
    p.add_argument("--output-dir", "-o", required=True, help="where <stem>/<target>.wav and <stem>/rest.wav go")
    enroll_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--mono", action="store_true",
                   help="write one channel (the downmix) even for multichannel input (default: the input's channels, "
                        "every channel shaped by the masks of the downmix)")
    p.add_argument("--no-timeline", action="store_true",
                   help="do not write <target>.timeline.json/.csv (when the target speaks: start, end, confidence)")
    p.add_argument("--timeline-threshold", type=float, default=None, metavar="SHARE",
                   help="share of the separated energy above which a frame counts as the target speaking "
                        "(default 0.2; 0.15 for one enrolled voice, with frames 40 dB below its loudest silent; 0.1 "
                        "in debate mode where the other named voices take their share; chosen on validation sets)")
    config.add_arguments(p, config.SeparateConfig)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from vsep import enroll, model_io, runtime, storage
    from vsep.audio import AudioError

    try:
        args.model = model_io.serving(args.model, enroll.parse_specs(args.enroll))
        scfg = config.from_namespace(config.SeparateConfig, args, model_io.separate_defaults(args.model))
        scfg.validate()
        if args.timeline_threshold is not None and not 0.0 <= args.timeline_threshold <= 1.0:
            raise ValueError(f"--timeline-threshold must lie in [0, 1], got {args.timeline_threshold}")
        storage.preflight(args.output_dir, args.model, *args.files)
        voices = enroll.read_specs(args.enroll, args.model)  # every clip checked before any other work
        served = runtime.load(args.model, scfg, voices)
    except (ValueError, model_io.ModelDirError, storage.StorageError, enroll.EnrollError) as e:
        print(f"vsep separate: error: {e}", file=sys.stderr)
        return 2
    channels_fn = None if args.mono else served.channels
    from vsep import timeline

    # two or more named voices (debate mode), one enrolled voice, or the one-target model: each its own detector
    threshold, quiet_db = timeline.detector(bool(served.cfg.embed_dim), len(served.names) - 1)
    if args.timeline_threshold is not None:
        threshold = args.timeline_threshold
    threshold = None if args.no_timeline else threshold
    failed = 0
    for path, name in zip(args.files, folder_names(args.files)):
        try:
            files = separate_file(path, args.output_dir, served.mono, served.cfg, not args.no_progress, name,
                                  channels_fn=channels_fn, timeline_threshold=threshold, names=served.names,
                                  timeline_quiet_db=quiet_db)
            print("  ".join(files))
        except (AudioError, RuntimeError, OSError) as e:
            failed += 1
            msg = _first_line(e)  # decoder errors (e.g. libsndfile's mid-stream ones) do not name the file
            print(f"vsep separate: error: {msg if path in msg else f'{path}: {msg}'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
