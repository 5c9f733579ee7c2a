"""collect: recordings (manifest or speaker folders) -> the data lake.

    python -m beam_jobs.collect --speakers ../shared/data/speakers \\
        --noise ../shared/data/noise --rir ../shared/data/rir --lake lake/

Each recording is read (local, ``gs://`` or ``http(s)://``), decoded, cut,
downmixed, resampled and trimmed by :func:`vsep.lake.make_clip`, written as a
FLAC clip and indexed. A recording that cannot be read or decoded is counted,
logged and listed in ``errors.jsonl``; the job still succeeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
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
from vsep import config, lake, storage
from vsep.audio import AudioError
from vsep.config import CollectConfig
from vsep.storage import StorageError

log = logging.getLogger("vsep.collect")


class DecodeAndStoreFn(beam.DoFn):
    """ManifestRow -> index line (main output) or error line (``errors``)."""

    ERRORS = "errors"

    def __init__(self, lake_root: str, cfg: CollectConfig) -> None:
        self.lake_root = lake_root
        self.cfg = cfg

    def setup(self) -> None:
        self.files_read = counter("files_read")
        self.read_failures = counter("read_failures")
        self.decode_failures = counter("decode_failures")
        self.clips_written = counter("clips_written")
        self.seconds = counter("seconds_collected")

    def process(self, row: lake.ManifestRow) -> Iterable:
        try:
            data = storage.read_bytes(row.uri, timeout_s=self.cfg.http_timeout_s)
        except StorageError as e:
            self.read_failures.inc()
            yield self._error(row, "read", str(e))
            return
        self.files_read.inc()
        try:
            entry, flac = lake.make_clip(data, row, self.cfg)
        except AudioError as e:
            self.decode_failures.inc()
            yield self._error(row, "decode", str(e))
            return
        target = storage.join(self.lake_root, entry.clip)
        if not storage.exists(target):  # content-addressed: same id, same bytes
            storage.write_bytes(target, flac)
        self.clips_written.inc()
        self.seconds.inc(int(round(entry.duration_s)))
        yield entry.recording_id, entry.to_json()

    @staticmethod
    def _error(row: lake.ManifestRow, stage: str, message: str) -> beam.pvalue.TaggedOutput:
        log.warning("skipped: %s", message)
        line = json.dumps({"uri": row.uri, "speaker": row.speaker, "stage": stage, "error": message})
        return beam.pvalue.TaggedOutput(DecodeAndStoreFn.ERRORS, line)


class Collect(beam.PTransform):
    """PCollection[ManifestRow] -> ``index.jsonl`` and ``errors.jsonl`` in the lake."""

    def __init__(self, lake_root: str, cfg: CollectConfig) -> None:
        super().__init__()
        self.lake_root = lake_root
        self.cfg = cfg

    def expand(self, rows):
        results = (
            rows
            | "Reshuffle" >> beam.Reshuffle()  # spread files over workers (no fusion with Create)
            | "DecodeAndStore"
            >> beam.ParDo(DecodeAndStoreFn(self.lake_root, self.cfg)).with_outputs(
                DecodeAndStoreFn.ERRORS, main="entries"
            )
        )
        index = (
            results.entries
            | "OnePerRecording" >> beam.CombinePerKey(min)  # same bytes listed twice
            | "DropKeys" >> beam.Values()
        )
        write_sorted_lines(index, storage.join(self.lake_root, "index"), "Index")
        write_sorted_lines(results[DecodeAndStoreFn.ERRORS], storage.join(self.lake_root, "errors"), "Errors")
        return results


# ------------------------------------------------------------ entry point


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vsep collect", description=__doc__.split("\n\n")[0])
    p.add_argument("--lake", required=True, help="output lake root (local folder or gs://)")
    p.add_argument("--manifest", action="append", default=[], help="CSV manifest: speaker,uri[,start,end,licence,kind]")
    p.add_argument("--speakers", action="append", default=[], help="folder laid out as <root>/<speaker>/<files>")
    p.add_argument("--noise", action="append", default=[], help="folder of noise: <root>/<category>/<files>")
    p.add_argument("--rir", action="append", default=[], help="folder of room impulse responses")
    config.add_arguments(p, CollectConfig)
    add_common(p)
    return p


def manifest_rows(args: argparse.Namespace) -> list[lake.ManifestRow]:
    """Every recording named by the manifests and folders, in a stable order."""
    rows: list[lake.ManifestRow] = []
    for uri in args.manifest:
        base = os.path.dirname(uri) if "://" not in uri else uri.rsplit("/", 1)[0]
        for row in lake.parse_manifest(storage.read_text(uri), source=uri):
            if not storage.is_remote(row.uri) and not os.path.isabs(row.uri):
                row = lake.ManifestRow(**{**row.__dict__, "uri": storage.join(base, row.uri)})
            rows.append(row)
    for kind, folders in (("speech", args.speakers), ("noise", args.noise), ("rir", args.rir)):
        for folder in folders:
            found = lake.scan_folder(folder, kind)
            if not found:
                raise ValueError(f"{folder}: no audio files found")
            rows.extend(found)
    if not rows:
        raise ValueError("nothing to collect: give --manifest, --speakers, --noise or --rir")
    return rows


def run(argv: Sequence[str] | None = None) -> dict[str, int]:
    """Run the collect job; returns its counters."""
    args, beam_args = build_parser().parse_known_args(argv)
    setup_logging(args.verbose)
    cfg = config.from_namespace(CollectConfig, args)
    storage.preflight(args.lake, *args.manifest)
    rows = manifest_rows(args)
    with quiet_workers(), beam.Pipeline(options=pipeline_options(beam_args)) as p:
        _ = p | "Manifest" >> beam.Create(rows) | "Collect" >> Collect(args.lake, cfg)
    values = counters(p.result)
    storage.write_text(storage.join(args.lake, "collect.json"), config.dumps(cfg))
    print_counters("collect", values)
    print(f"collect  lake  {args.lake}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("collect", run, argv)


if __name__ == "__main__":
    sys.exit(main())
