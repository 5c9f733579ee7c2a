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
from collections.abc import Iterable, Sequence

import apache_beam as beam

from beam_jobs.common import (
    add_common,
    counter,
    counters,
    pipeline_options,
    print_counters,
    quiet_workers,
    run_main,
    setup_logging,
    write_sorted_lines,
)
from vsep import config, lake, mixing, storage
from vsep.audio import AudioError
from vsep.config import PrepareConfig
from vsep.manifest import MANIFEST
from vsep.mixer import ClipCache, Mixer, interference_pools
from vsep.shards import ShardWriter
from vsep.storage import StorageError

log = logging.getLogger("vsep.prepare")
ERRORS = "errors"
SHARD_INDEX = "shards"


def with_split(entry: lake.LakeEntry, cfg: PrepareConfig) -> mixing.PoolClip:
    """The entry as a pool clip with its split (:func:`vsep.mixing.split_of`)."""
    return mixing.PoolClip(
        kind=entry.kind,
        speaker=entry.speaker,
        recording_id=entry.recording_id,
        clip=entry.clip,
        num_samples=entry.num_samples,
        split=mixing.split_of(entry.speaker, entry.kind, entry.recording_id, entry.source_uri, cfg),
        clip_sha1=entry.clip_sha1,
    )


def shard_counts(cfg: PrepareConfig) -> dict[str, int]:
    small = max(1, cfg.num_shards // 4)
    return {"train": cfg.num_shards, "val": small, "test": small}


def suffix(cfg: PrepareConfig) -> str:
    return ".tfrecord.gz" if cfg.compression == "gzip" else ".tfrecord"


def shard_name(split: str, index: int, count: int, cfg: PrepareConfig) -> str:
    return f"{split}-{index:05d}-of-{count:05d}{suffix(cfg)}"


class PlanWindowsFn(beam.DoFn):
    """Target clip -> ``((split, shard), (clip, start))`` per window: metadata only, no audio read.

    Each window goes to a shard of its split by a hash of its id, so a long
    recording is spread over every shard and every shard is a bounded unit of work.
    """

    def __init__(self, cfg: PrepareConfig) -> None:
        self.cfg = cfg

    def setup(self) -> None:
        self.too_short = counter("target_clips_shorter_than_window")
        self.windows = counter("windows_cut")

    def process(self, clip: mixing.PoolClip) -> Iterable[tuple[tuple[str, int], tuple[mixing.PoolClip, int]]]:
        cfg = self.cfg
        starts = mixing.window_starts(clip.num_samples, cfg.window, cfg.hop, cfg.min_window)
        if not starts:
            self.too_short.inc()
        shards = shard_counts(cfg)[clip.split]
        for start in starts:
            self.windows.inc()
            index = int(mixing.unit_hash(f"shard:{cfg.seed}:{clip.recording_id}@{start}") * shards)
            yield (clip.split, index), (clip, start)


class WriteShardFn(beam.DoFn):
    """``((split, shard), windows)`` -> one shard file in staging, streamed example by example.

    Memory is bounded by the clip caches, whatever the corpus size. Outputs
    the shard's :class:`vsep.shards.ShardInfo` as JSON, and unreadable target
    clips on the ``errors`` output. Side input: every pool clip's metadata.
    """

    def __init__(self, lake_root: str, staging: str, cfg: PrepareConfig) -> None:
        self.lake_root, self.staging, self.cfg = lake_root, staging, cfg

    def setup(self) -> None:
        self.counters: dict = {}
        self.loudness = mixing.Loudness(self.cfg.sample_rate)
        self.targets = ClipCache(self.lake_root, max_samples=32_000_000)
        self.cache = ClipCache(self.lake_root)
        self.mixer: Mixer | None = None

    def count(self, name: str) -> None:
        if name not in self.counters:
            self.counters[name] = counter(name)
        self.counters[name].inc()

    def process(self, element, pool: list[mixing.PoolClip]) -> Iterable:
        (split, index), refs = element
        cfg = self.cfg
        if self.mixer is None:
            self.mixer = Mixer(cfg, interference_pools(pool, cfg.target), self.cache, self.count)
        order = sorted(refs, key=lambda r: mixing.unit_hash(f"order:{cfg.seed}:{r[0].recording_id}@{r[1]}"))
        uri = storage.join(self.staging, shard_name(split, index, shard_counts(cfg)[split], cfg))
        failed: set[str] = set()
        with ShardWriter(uri, cfg.compression == "gzip") as writer:
            for clip, start in order:
                if clip.clip in failed:
                    continue
                try:
                    x = self.targets.get(clip)
                except (StorageError, AudioError) as e:
                    failed.add(clip.clip)
                    log.warning("skipped %s: %s", clip.clip, e)
                    yield beam.pvalue.TaggedOutput(ERRORS, json.dumps({"clip": clip.clip, "error": str(e)}))
                    continue
                norm = mixing.normalize(mixing.take_window(x, start, cfg.window), self.loudness, cfg)
                if norm is None:
                    self.count("windows_dropped_silent")
                    continue
                window = {"window_id": f"{clip.recording_id}@{start}", "recording_id": clip.recording_id,
                          "split": split, "samples": norm[0]}
                for record in self.mixer.examples(window):
                    writer.write(record)
        yield json.dumps({"split": split, **writer.info.to_dict()})


class Prepare(beam.PTransform):
    """Lake entries -> ``<staging>/<split>-SSSSS-of-NNNNN.tfrecord.gz``, ``shards.jsonl``, ``errors.jsonl``.

    Only metadata crosses the shuffle (window references, grouped by shard);
    each shard is written by one worker that reads its audio as it goes.
    """

    def __init__(self, lake_root: str, staging: str, cfg: PrepareConfig) -> None:
        super().__init__()
        self.lake_root = lake_root
        self.staging = staging
        self.cfg = cfg

    def expand(self, entries):
        cfg = self.cfg
        clips = entries | "AssignSplit" >> beam.Map(with_split, cfg)
        pool = clips | "InterferencePool" >> beam.Filter(lambda c: c.speaker != cfg.target)
        written = (
            clips
            | "TargetClips" >> beam.Filter(lambda c: c.speaker == cfg.target and c.kind == "speech")
            | "PlanWindows" >> beam.ParDo(PlanWindowsFn(cfg))
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShards"
            >> beam.ParDo(WriteShardFn(self.lake_root, self.staging, cfg), pool=beam.pvalue.AsList(pool))
            .with_outputs(ERRORS, main="shards")
        )
        errors = written[ERRORS] | "OneErrorPerClip" >> beam.Distinct()
        write_sorted_lines(errors, storage.join(self.staging, ERRORS), "Errors")
        write_sorted_lines(written.shards, storage.join(self.staging, SHARD_INDEX), "ShardIndex")
        return written


def complete_shards(staging: str, cfg: PrepareConfig) -> dict[str, list[dict]]:
    """Every shard's info by split, read from ``shards.jsonl``; empty shards are written here."""
    lines = storage.read_text(storage.join(staging, f"{SHARD_INDEX}.jsonl")).splitlines()
    found: dict[str, dict] = {}
    for line in lines:
        d = json.loads(line)
        found[d.pop("name")] = d
    out: dict[str, list[dict]] = {}
    for split, count in shard_counts(cfg).items():
        out[split] = []
        for i in range(count):
            name = shard_name(split, i, count, cfg)
            if name not in found:  # no window hashed here: an empty shard keeps the -of-N set whole
                with ShardWriter(storage.join(staging, name), cfg.compression == "gzip") as w:
                    pass
                found[name] = {"split": split, **{k: v for k, v in w.info.to_dict().items() if k != "name"}}
            info = found[name]
            out[split].append({"name": name, "records": info["records"], "bytes": info["bytes"],
                               "sha256": info["sha256"]})
    return out


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


def check_holdout(entries: list[lake.LakeEntry], cfg: PrepareConfig) -> None:
    """A held-out pattern that matches no recording is a mistake, not an empty condition."""
    from fnmatch import fnmatchcase

    names = [mixing.source_name(e.speaker, e.source_uri) for e in entries]
    for split, patterns in (("val", cfg.val_holdout), ("test", cfg.test_holdout)):
        for pattern in patterns:
            if not any(fnmatchcase(n, pattern) for n in names):
                raise ValueError(f"--{split}-holdout {pattern!r} matches no recording in the lake "
                                 "(patterns match '<speaker>/<source file name>')")


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
    check_holdout(entries, cfg)
    run_id = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    staging = storage.join(args.output, "_staging", run_id)
    with quiet_workers(), beam.Pipeline(options=pipeline_options(beam_args)) as p:
        _ = p | "LakeIndex" >> beam.Create(entries) | "Prepare" >> Prepare(args.lake, staging, cfg)
    values = counters(p.result)
    shard_info = complete_shards(staging, cfg)
    errors = storage.join(staging, f"{ERRORS}.jsonl")
    values["read_failures"] = len(storage.read_text(errors).splitlines()) if storage.exists(errors) else 0
    values = dict(sorted(values.items()))
    manifest = {
        "format": "vsep-tfrecords",
        "schema_version": 1,
        "manifest_version": 2,
        "run_id": run_id,
        "lake": args.lake,
        "config": config.to_dict(cfg),
        "counts": {s: values.get(f"examples_{s}", 0) for s in mixing.SPLITS},
        "counters": values,
        "splits": splits_of(clips, cfg.target),
        "shard_info": shard_info,
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
