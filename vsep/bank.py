"""``vsep bank``: every speaker's speech as loudness-normalised windows, for training with any speaker as target.

    vsep bank --lake runs/lake --config recipes/prepare_cross_source.json --output runs/bank

The enrollment-conditioned model (:mod:`vsep.speaker`) learns from every
voice in the data, not only the target's: each training example picks a
speaker, a window of that speaker as the target, another window of the
same speaker as the enrollment clip, and interference from other speakers
and noises, mixed on the fly (:mod:`vsep.enroll_data`). The bank holds what
that needs, split exactly as ``vsep prepare`` splits the lake (same
held-out patterns and hashes, :func:`vsep.mixing.split_of`), so nothing
leaks between train, val and test.

Layout under ``--output`` (local)::

    bank.json                 PrepareConfig, per split: speakers, windows, seconds
    <split>.f16               float16 windows ``[N, window]``, raw little-endian
    <split>.json              per window: speaker index, kind (speech | noise)

Streams: one speaker's clips at a time are decoded, concatenated with short
pauses (soundbites of a second make whole windows), cut into windows and
normalised (:func:`vsep.mixing.normalize`; silent windows are dropped), so
memory is one speaker's audio, whatever the corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby

import numpy as np

from vsep import config, lake, mixing, storage
from vsep.config import PrepareConfig

SPLITS = ("train", "val", "test")
PAUSE_S = 0.15  # silence between concatenated clips of one speaker


@dataclass
class Bank:
    """One split of a bank: ``windows [N, n]`` float16 (memory-mapped), ``speaker [N]``, ``is_noise [N]``."""

    windows: np.ndarray
    speaker: np.ndarray
    is_noise: np.ndarray
    speakers: list[str]
    sample_rate: int

    def of_speaker(self, index: int) -> np.ndarray:
        return np.flatnonzero((self.speaker == index) & ~self.is_noise)


def load(root: str, split: str) -> Bank:
    """The ``split`` of the bank under ``root``; one clear line if it is missing or empty."""
    meta_path = os.path.join(root, "bank.json")
    if not os.path.exists(meta_path):
        raise ValueError(f"{root}: not a speaker bank (no bank.json; make one with vsep bank)")
    meta = json.load(open(meta_path))
    info = meta["splits"].get(split)
    if not info or not info["windows"]:
        raise ValueError(f"{root}: the bank has no {split} windows")
    index = json.load(open(os.path.join(root, f"{split}.json")))
    n = int(meta["window"])
    windows = np.memmap(os.path.join(root, f"{split}.f16"), dtype="<f2", mode="r", shape=(info["windows"], n))
    return Bank(windows, np.asarray(index["speaker"], np.int32), np.asarray(index["noise"], bool),
                index["speakers"], int(meta["sample_rate"]))


def with_voice_shifts(bank: Bank, shifts: Sequence[float]) -> Bank:
    """``bank`` plus, for every shift (percent) and every speech voice, that voice resampled so its pitch and
    formants move by the shift (:func:`vsep.audio.shift_voice`): a new voice named ``<name>@<shift>%``, its
    windows cut from the voice's shifted windows end to end. The original windows keep their indices
    (``[:len(bank.windows)]``); noises are not shifted. In memory: ``(1 + len(shifts))`` times the split."""
    from vsep.audio import shift_voice

    n = bank.windows.shape[1]
    parts, speaker, speakers = [np.asarray(bank.windows)], [bank.speaker], list(bank.speakers)
    for pct in shifts:
        for s, name in enumerate(bank.speakers):
            own = bank.of_speaker(s)
            if name.startswith("noise:") or not len(own):
                continue
            y = shift_voice(np.asarray(bank.windows[own], np.float32).reshape(-1), float(pct))
            count = len(y) // n
            if not count:
                continue
            parts.append(y[: count * n].reshape(count, n).astype(np.float16))
            speaker.append(np.full(count, len(speakers), np.int32))
            speakers.append(f"{name}@{pct:+g}%")
    is_noise = np.concatenate([bank.is_noise, np.zeros(sum(len(p) for p in parts[1:]), bool)])
    return Bank(np.concatenate(parts), np.concatenate(speaker).astype(np.int32), is_noise, speakers,
                bank.sample_rate)


def speaker_windows(audio: Sequence[np.ndarray], cfg: PrepareConfig, meter: mixing.Loudness,
                    loop: bool = False) -> Iterator[np.ndarray]:
    """Normalised windows ``[cfg.window]`` of clips joined with short pauses; silent ones left out.

    A noise (``loop``) shorter than a window is repeated to fill one.
    """
    pause = np.zeros(int(PAUSE_S * cfg.sample_rate), np.float32)
    stream = np.concatenate([part for x in audio for part in (x, pause)]) if audio else np.zeros(0, np.float32)
    if loop and 0 < len(stream) < cfg.window:
        stream = np.tile(stream, -(-cfg.window // len(stream)))
    for start in mixing.window_starts(len(stream), cfg.window, cfg.window, cfg.min_window):
        norm = mixing.normalize(mixing.take_window(stream, start, cfg.window), meter, cfg)
        if norm is not None:
            yield norm[0]


def build(lake_root: str, out: str, cfg: PrepareConfig) -> dict:
    """Write the bank of ``lake_root`` under ``out``; returns the ``bank.json`` document."""
    entries = [e for e in lake.read_index(lake_root) if e.kind in ("speech", "noise")]
    if not entries:
        raise ValueError(f"{lake_root}: the lake has no speech")
    os.makedirs(out, exist_ok=True)
    meter = mixing.Loudness(cfg.sample_rate)
    files = {s: open(os.path.join(out, f"{s}.f16.tmp"), "wb") for s in SPLITS}
    index = {s: {"speakers": [], "speaker": [], "noise": []} for s in SPLITS}
    seconds = {s: 0.0 for s in SPLITS}

    def key(e: lake.LakeEntry) -> tuple:
        return (e.kind, e.speaker, mixing.split_of(e.speaker, e.kind, e.recording_id, e.source_uri, cfg))

    try:
        for (kind, speaker, split), group in groupby(sorted(entries, key=key), key=key):
            if split not in SPLITS:
                continue
            clips = [lake.load_clip(lake_root, e) for e in group]
            idx = index[split]
            name = f"{kind}:{speaker}" if kind == "noise" else speaker
            count = 0
            for w in speaker_windows(clips, cfg, meter, loop=kind == "noise"):
                files[split].write(w.astype("<f2").tobytes())
                idx["speaker"].append(len(idx["speakers"]))
                idx["noise"].append(kind == "noise")
                count += 1
            if count:
                idx["speakers"].append(name)
                seconds[split] += count * cfg.window_s
    finally:
        for f in files.values():
            f.close()
    for s in SPLITS:
        os.replace(os.path.join(out, f"{s}.f16.tmp"), os.path.join(out, f"{s}.f16"))
        with open(os.path.join(out, f"{s}.json"), "w") as f:
            json.dump(index[s], f)
    doc = {"config": config.to_dict(cfg), "sample_rate": cfg.sample_rate, "window": cfg.window, "target": cfg.target,
           "splits": {s: {"windows": len(index[s]["speaker"]),
                          "speakers": sum(not n.startswith("noise:") for n in index[s]["speakers"]),
                          "noise_windows": int(sum(index[s]["noise"])), "seconds": seconds[s]} for s in SPLITS}}
    with open(os.path.join(out, "bank.json"), "w") as f:
        json.dump(doc, f, indent=1)
    return doc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vsep bank", description=__doc__.split("\n\n")[0])
    p.add_argument("--lake", required=True, help="lake root written by vsep collect")
    p.add_argument("--output", required=True, help="local directory of the bank")
    p.add_argument("--config", help="PrepareConfig JSON (the splits and held-out patterns of vsep prepare)")
    config.add_arguments(p, PrepareConfig)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        base = config.loads(PrepareConfig, storage.read_text(args.config)) if args.config else PrepareConfig()
        cfg = config.from_namespace(PrepareConfig, args, base)
        cfg.validate()
        doc = build(args.lake, args.output, cfg)
    except (ValueError, FileNotFoundError, storage.StorageError) as e:
        print(f"vsep bank: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    for s, info in doc["splits"].items():
        print(f"bank {s}: {info['speakers']} speakers, {info['windows']} windows "
              f"({info['noise_windows']} noise), {info['seconds'] / 3600:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
