"""prepare: the data lake -> loudness-normalised mixtures as sharded TFRecords.

    python -m beam_jobs.prepare --lake lake/ --output data/ --target trump

Target-speaker clips are cut into windows; silent windows are dropped; each
window is loudness-normalised and mixed ``mixtures_per_window`` times with
other speech and/or noise from the same split (see :mod:`vsep.mixing`). Splits
are assigned by recording id (and, for other speakers, by speaker), so no
recording appears in two splits. Shards are written to a staging folder and
moved into place only when the job has succeeded; ``manifest.json`` is written
last and names exactly the shards of the run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
import sys
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import apache_beam as beam
import numpy as np

from beam_jobs.common import (
    add_common,
    counter,
    counters,
    pipeline_options,
    print_counters,
    run_main,
    setup_logging,
    write_sorted_lines,
)
from vsep import config, lake, mixing, schema, storage
from vsep.audio import AudioError
from vsep.config import PrepareConfig
from vsep.manifest import MANIFEST
from vsep.storage import StorageError

log = logging.getLogger("vsep.prepare")
ERRORS = "errors"


def with_split(entry: lake.LakeEntry, cfg: PrepareConfig) -> mixing.PoolClip:
    """The entry as a pool clip with its split (room responses serve every split)."""
    key = mixing.split_key(entry.speaker, entry.kind, entry.recording_id, cfg.target, cfg)
    split = "any" if entry.kind == "rir" else mixing.assign_split(key, cfg.split_fractions)
    return mixing.PoolClip(
        kind=entry.kind,
        speaker=entry.speaker,
        recording_id=entry.recording_id,
        clip=entry.clip,
        num_samples=entry.num_samples,
        split=split,
    )


class ClipCache:
    """Decoded lake clips, least recently used dropped beyond ``max_samples``."""

    def __init__(self, lake_root: str, max_samples: int = 64_000_000) -> None:
        self.lake_root = lake_root
        self.max_samples = max_samples
        self.items: OrderedDict[str, np.ndarray] = OrderedDict()
        self.size = 0

    def get(self, clip: mixing.PoolClip) -> np.ndarray:
        x = self.items.get(clip.clip)
        if x is not None:
            self.items.move_to_end(clip.clip)
            return x
        data = storage.read_bytes(storage.join(self.lake_root, clip.clip))
        from vsep import audio

        x = audio.to_mono(audio.decode(data, clip.clip)[0])
        self.items[clip.clip] = x
        self.size += len(x)
        while self.size > self.max_samples and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.size -= len(old)
        return x


class WindowFn(beam.DoFn):
    """Target clip -> normalised windows ``dict(window_id, split, samples[window])``."""

    def __init__(self, lake_root: str, cfg: PrepareConfig) -> None:
        self.lake_root = lake_root
        self.cfg = cfg

    def setup(self) -> None:
        self.loudness = mixing.Loudness(self.cfg.sample_rate)
        self.cache = ClipCache(self.lake_root, max_samples=0)  # each clip is read once
        self.clips_read = counter("target_clips_read")
        self.too_short = counter("target_clips_shorter_than_window")
        self.read_failures = counter("read_failures")
        self.windows = counter("windows_cut")
        self.silent = counter("windows_dropped_silent")

    def process(self, clip: mixing.PoolClip) -> Iterable[dict]:
        try:
            x = self.cache.get(clip)
        except (StorageError, AudioError) as e:
            self.read_failures.inc()
            log.warning("skipped %s: %s", clip.clip, e)
            yield beam.pvalue.TaggedOutput(ERRORS, json.dumps({"clip": clip.clip, "error": str(e)}))
            return
        self.clips_read.inc()
        starts = mixing.window_starts(len(x), self.cfg.window, self.cfg.hop, self.cfg.min_window)
        if not starts:
            self.too_short.inc()
            return
        for start in starts:
            self.windows.inc()
            window = mixing.take_window(x, start, self.cfg.window)
            norm = mixing.normalize(window, self.loudness, self.cfg)
            if norm is None:
                self.silent.inc()
                continue
            yield {
                "window_id": f"{clip.recording_id}@{start}",
                "recording_id": clip.recording_id,
                "speaker": clip.speaker,
                "split": clip.split,
                "samples": norm[0],
            }


class MixFn(beam.DoFn):
    """Target window -> serialized examples, tagged by split.

    Side input: every pool clip (other speech, noise, room responses).
    """

    MAX_TRIES = 8

    def __init__(self, lake_root: str, cfg: PrepareConfig) -> None:
        self.lake_root = lake_root
        self.cfg = cfg

    def setup(self) -> None:
        self.loudness = mixing.Loudness(self.cfg.sample_rate)
        self.cache = ClipCache(self.lake_root)
        self.pools: dict[tuple[str, str], list[mixing.PoolClip]] | None = None
        self.skipped = counter("mixtures_skipped_no_interference")
        self.per_split = {s: counter(f"examples_{s}") for s in mixing.SPLITS}
        self.per_kind = {k: counter(f"kind_{k}") for k in schema.KINDS}

    def _pools(self, pool: list[mixing.PoolClip]) -> dict[tuple[str, str], list[mixing.PoolClip]]:
        if self.pools is None:
            self.pools = {}
            for c in pool:
                if c.speaker == self.cfg.target:
                    continue
                self.pools.setdefault((c.kind, c.split), []).append(c)
        return self.pools

    def _interference(self, rng: np.random.Generator, kind: str, split: str) -> tuple[np.ndarray, str] | None:
        """A normalised, non-silent window of speech or noise from ``split``."""
        candidates = self.pools.get((kind, split)) if self.pools else None
        if not candidates:
            return None
        for _ in range(self.MAX_TRIES):
            clip = mixing.choose_clip(rng, candidates)
            try:
                x = self.cache.get(clip)
            except (StorageError, AudioError) as e:
                log.warning("interference clip %s unreadable: %s", clip.clip, e)
                continue
            seg = mixing.cut_segment(rng, x, self.cfg.window, loop=(kind == "noise"))
            norm = mixing.normalize(seg, self.loudness, self.cfg)
            if norm is not None:
                return norm[0], clip.recording_id
        return None

    def process(self, window: dict, pool: list[mixing.PoolClip]) -> Iterable:
        pools = self._pools(pool)
        cfg, n = self.cfg, self.cfg.window
        zeros = np.zeros(n, dtype=np.float32)
        for k in range(cfg.mixtures_per_window):
            rng = mixing.rng_for(cfg.seed, window["window_id"], k)
            plan = mixing.plan_mixture(rng, cfg)
            has_t, has_o, has_n = mixing.needs(plan.kind)
            target, rir_id = window["samples"], ""
            if has_t and plan.reverb and pools.get(("rir", "any")):
                rir_clip = mixing.choose_clip(rng, pools[("rir", "any")])
                wet = mixing.reverberate(target, self.cache.get(rir_clip))
                norm = mixing.normalize(wet, self.loudness, cfg)
                if norm is not None:
                    target, rir_id = norm[0], rir_clip.recording_id
            other = self._interference(rng, "speech", window["split"]) if has_o else (zeros, "")
            noise = self._interference(rng, "noise", window["split"]) if has_n else (zeros, "")
            if other is None or noise is None:
                self.skipped.inc()
                continue
            g_other, g_noise = mixing.interference_gains(plan)
            gains = (0.0 if has_t else -120.0, g_other if has_o else -120.0, g_noise if has_n else -120.0)
            sources, scale_db = mixing.mix(target if has_t else zeros, other[0], noise[0], gains, cfg.max_clip_peak)
            example = {
                **sources,
                "example_id": f"{window['window_id']}#{k}",
                "split": window["split"],
                "kind": plan.kind,
                "target_speaker": cfg.target,
                "target_id": window["recording_id"] if has_t else "",
                "other_id": other[1],
                "noise_id": noise[1],
                "rir_id": rir_id,
                "target_gain_db": gains[0],
                "other_gain_db": gains[1],
                "noise_gain_db": gains[2],
                "scale_db": scale_db,
                "tir_db": plan.tir_db if has_t else -120.0,
                "snr_db": plan.snr_db if (has_o and has_n) else 0.0,
                "sample_rate": cfg.sample_rate,
                "num_samples": n,
            }
            self.per_split[window["split"]].inc()
            self.per_kind[plan.kind].inc()
            yield beam.pvalue.TaggedOutput(window["split"], schema.encode(example))


def shard_counts(cfg: PrepareConfig) -> dict[str, int]:
    small = max(1, cfg.num_shards // 4)
    return {"train": cfg.num_shards, "val": small, "test": small}


def suffix(cfg: PrepareConfig) -> str:
    return ".tfrecord.gz" if cfg.compression == "gzip" else ".tfrecord"


class Prepare(beam.PTransform):
    """Lake entries -> ``<staging>/<split>-SSSSS-of-NNNNN.tfrecord.gz`` per split."""

    def __init__(self, lake_root: str, staging: str, cfg: PrepareConfig) -> None:
        super().__init__()
        self.lake_root = lake_root
        self.staging = staging
        self.cfg = cfg

    def expand(self, entries):
        cfg = self.cfg
        clips = entries | "AssignSplit" >> beam.Map(with_split, cfg)
        pool = clips | "InterferencePool" >> beam.Filter(lambda c: c.speaker != cfg.target)
        windows = (
            clips
            | "TargetClips" >> beam.Filter(lambda c: c.speaker == cfg.target and c.kind == "speech")
            | "SpreadClips" >> beam.Reshuffle()
            | "CutWindows" >> beam.ParDo(WindowFn(self.lake_root, cfg)).with_outputs(ERRORS, main="windows")
        )
        write_sorted_lines(windows[ERRORS], storage.join(self.staging, ERRORS), "Errors")
        examples = (
            windows.windows
            | "SpreadWindows" >> beam.Reshuffle()
            | "Mix"
            >> beam.ParDo(MixFn(self.lake_root, cfg), pool=beam.pvalue.AsList(pool)).with_outputs(*mixing.SPLITS)
        )
        compression = (
            beam.io.filesystem.CompressionTypes.GZIP
            if cfg.compression == "gzip"
            else beam.io.filesystem.CompressionTypes.UNCOMPRESSED
        )
        for split, shards in shard_counts(cfg).items():
            _ = examples[split] | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
                storage.join(self.staging, split),
                file_name_suffix=suffix(cfg),
                num_shards=shards,
                compression_type=compression,
            )
        return examples


# ------------------------------------------------------------ commit


def shard_pattern(output: str, split: str) -> str:
    return storage.join(output, f"{split}-*-of-*.tfrecord*")


def commit(staging: str, output: str, manifest: dict) -> dict[str, list[str]]:
    """Replace the shards under ``output`` by those in ``staging``, manifest last.

    The old manifest goes first, so a reader that finds a manifest always
    finds exactly the shards it names. Returns the new shard names per split.
    """
    manifest_uri = storage.join(output, MANIFEST)
    storage.delete([manifest_uri])
    shards: dict[str, list[str]] = {}
    for split in mixing.SPLITS:
        storage.delete(storage.glob(shard_pattern(output, split)))
        new = storage.glob(shard_pattern(staging, split))
        names = [u.rsplit("/", 1)[-1] for u in new]
        storage.rename(new, [storage.join(output, name) for name in names])
        shards[split] = names
    errors = storage.join(staging, f"{ERRORS}.jsonl")
    storage.delete([storage.join(output, f"{ERRORS}.jsonl")])
    if storage.exists(errors):
        storage.rename([errors], [storage.join(output, f"{ERRORS}.jsonl")])
    storage.write_text(manifest_uri, json.dumps({**manifest, "shards": shards}, indent=2, sort_keys=True))
    remove_tree(staging)
    return shards


def remove_tree(uri: str) -> None:
    if "://" not in uri:
        shutil.rmtree(uri, ignore_errors=True)
    else:
        storage.delete(storage.list_files(uri))
        return
    parent = os.path.dirname(uri.rstrip("/"))
    if os.path.basename(parent) == "_staging" and not os.listdir(parent):
        os.rmdir(parent)


# ------------------------------------------------------------ entry point


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vsep prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("--lake", required=True, help="lake root written by 'vsep collect' (local or gs://)")
    p.add_argument("--output", required=True, help="output prefix for shards and manifest.json (local or gs://)")
    p.add_argument("--config", help="JSON PrepareConfig; command-line options override it")
    config.add_arguments(p, PrepareConfig)
    add_common(p)
    return p


def splits_of(clips: list[mixing.PoolClip], target: str) -> dict[str, dict[str, list[str]]]:
    """Which recordings and speakers went to which split (recorded in the manifest)."""
    out: dict[str, dict[str, list[str]]] = {}
    for c in clips:
        if c.kind == "rir":
            continue
        role = "target" if c.speaker == target else c.kind
        d = out.setdefault(c.split, {})
        d.setdefault(f"{role}_recordings", []).append(c.recording_id)
        if c.kind == "speech" and c.speaker != target:
            d.setdefault("other_speakers", []).append(c.speaker)
    return {s: {k: sorted(set(v)) for k, v in d.items()} for s, d in sorted(out.items())}


def run(argv: Sequence[str] | None = None) -> dict:
    """Run the prepare job; returns the manifest it wrote."""
    args, beam_args = build_parser().parse_known_args(argv)
    setup_logging(args.verbose)
    storage.preflight(args.lake, args.output, args.config)
    base = config.loads(PrepareConfig, storage.read_text(args.config)) if args.config else None
    cfg = config.from_namespace(PrepareConfig, args, base)
    cfg.validate()
    entries = lake.read_index(args.lake)
    rates = {e.sample_rate for e in entries}
    if rates != {cfg.sample_rate}:
        raise ValueError(f"lake sample rate {sorted(rates)} differs from --sample-rate {cfg.sample_rate}")
    clips = [with_split(e, cfg) for e in entries]
    if not any(c.speaker == cfg.target and c.kind == "speech" for c in clips):
        speakers = sorted({e.speaker for e in entries if e.kind == "speech"})
        raise ValueError(f"target speaker {cfg.target!r} is not in the lake (it has {len(speakers)} speakers)")
    run_id = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    staging = storage.join(args.output, "_staging", run_id)
    with beam.Pipeline(options=pipeline_options(beam_args)) as p:
        _ = p | "LakeIndex" >> beam.Create(entries) | "Prepare" >> Prepare(args.lake, staging, cfg)
    values = counters(p.result)
    manifest = {
        "format": "vsep-tfrecords",
        "schema_version": 1,
        "run_id": run_id,
        "lake": args.lake,
        "config": config.to_dict(cfg),
        "counts": {s: values.get(f"examples_{s}", 0) for s in mixing.SPLITS},
        "counters": values,
        "splits": splits_of(clips, cfg.target),
    }
    manifest["shards"] = commit(staging, args.output, manifest)
    print_counters("prepare", values)
    print(f"prepare  output  {args.output}  " + " ".join(f"{s}={n}" for s, n in manifest["counts"].items()))
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("prepare", run, argv)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    sys.exit(main())
