"""The data lake: clean mono clips per speaker, content-addressed, with an index.

Layout under a lake root (local or ``gs://``)::

    clips/<kind>/<speaker>/<recording_id>.flac   16-bit FLAC, mono, lake rate
    index.jsonl                                  one LakeEntry per line
    errors.jsonl                                 one rejected input per line
    collect.json                                 CollectConfig of the run

``kind`` is ``speech`` (a named speaker), ``noise`` (non-speech, babble) or
``rir`` (room impulse responses). A recording id is the SHA-1 of the source
bytes (and the cut, when the manifest gives start/end), so re-collecting the
same file writes the same clip.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
from dataclasses import dataclass

import numpy as np

from vsep import audio, storage
from vsep.config import CollectConfig

KINDS = ("speech", "noise", "rir")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class ManifestRow:
    """One recording to collect."""

    speaker: str
    uri: str
    kind: str = "speech"
    start_s: float | None = None
    end_s: float | None = None
    licence: str = ""


@dataclass(frozen=True)
class LakeEntry:
    """One clip in the lake (a line of ``index.jsonl``)."""

    speaker: str
    kind: str
    recording_id: str
    clip: str  # path relative to the lake root
    num_samples: int
    sample_rate: int
    source_uri: str
    start_s: float | None = None
    end_s: float | None = None
    licence: str = ""
    clip_sha1: str = ""  # of the clip's FLAC bytes: a clip replaced after collect is found (empty: older lakes)

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "duration_s": round(self.duration_s, 4)})

    @classmethod
    def from_json(cls, line: str) -> LakeEntry:
        data = json.loads(line)
        data.pop("duration_s", None)
        return cls(**data)


# ------------------------------------------------------------ manifests


def check_name(speaker: str) -> str:
    """A speaker name usable as a folder name, or ``ValueError``."""
    if not NAME_RE.match(speaker or ""):
        raise ValueError(f"speaker name {speaker!r} must be letters, digits, '_', '-' or '.'")
    return speaker


def parse_manifest(text: str, source: str = "manifest") -> list[ManifestRow]:
    """Rows of a CSV manifest with header ``speaker,uri[,start,end,licence,kind]``.

    Relative local URIs stay as written; lines starting with ``#`` are comments.
    """
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    need = {"speaker", "uri"}
    if reader.fieldnames is None or not need <= {f.strip() for f in reader.fieldnames}:
        raise ValueError(f"{source}: header must name at least 'speaker' and 'uri'")
    rows = []
    for n, raw in enumerate(reader, start=2):
        rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        try:
            kind = rec.get("kind") or "speech"
            if kind not in KINDS:
                raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
            start = float(rec["start"]) if rec.get("start") else None
            end = float(rec["end"]) if rec.get("end") else None
            if start is not None and end is not None and end <= start:
                raise ValueError(f"end {end} is not after start {start}")
            if not rec.get("uri"):
                raise ValueError("empty uri")
            rows.append(
                ManifestRow(
                    speaker=check_name(rec.get("speaker", "")),
                    uri=rec["uri"],
                    kind=kind,
                    start_s=start,
                    end_s=end,
                    licence=rec.get("licence", "") or rec.get("license", ""),
                )
            )
        except ValueError as e:
            raise ValueError(f"{source} line {n}: {e}") from None
    return rows


def scan_folder(root: str, kind: str = "speech") -> list[ManifestRow]:
    """Rows for ``<root>/<speaker>/**/<file>`` (any audio suffix); speaker = first folder.

    Files directly under ``root`` take the root folder's name as speaker.
    """
    rows = []
    base = root.rstrip("/")
    for path in storage.list_files(base):
        rel = path[len(base) :].lstrip("/").replace("\\", "/")
        parts = rel.split("/")
        if not rel.lower().endswith(AUDIO_SUFFIXES):
            continue
        speaker = parts[0] if len(parts) > 1 else base.rsplit("/", 1)[-1]
        rows.append(ManifestRow(speaker=check_name(speaker), uri=path, kind=kind))
    return rows


# ------------------------------------------------------------ clips


def recording_id(data: bytes, row: ManifestRow) -> str:
    """Stable content id: SHA-1 of the bytes (and of the cut), 16 hex digits."""
    h = hashlib.sha1(data)
    if row.start_s is not None or row.end_s is not None:
        h.update(f"|{row.start_s}|{row.end_s}".encode())
    return h.hexdigest()[:16]


def clip_path(kind: str, speaker: str, rid: str) -> str:
    return f"clips/{kind}/{speaker}/{rid}.flac"


def make_clip(data: bytes, row: ManifestRow, cfg: CollectConfig) -> tuple[LakeEntry, bytes]:
    """Decode, cut, downmix, resample and trim one recording.

    Returns the index entry and the FLAC bytes of the clip. Raises
    :class:`vsep.audio.AudioError` (one line) for an unusable recording.
    """
    name = row.uri
    decoded, rate_in = audio.decode(data, name)
    if row.start_s is not None or row.end_s is not None:
        a = int(round((row.start_s or 0.0) * rate_in))
        b = decoded.shape[0] if row.end_s is None else int(round(row.end_s * rate_in))
        if a >= decoded.shape[0]:
            raise audio.AudioError(f"{name}: start {row.start_s}s is past the end of the recording")
        decoded = decoded[a:b]
    x = audio.resample(audio.to_mono(decoded), rate_in, cfg.sample_rate)
    if row.kind != "rir":  # a room response's silent tail is part of it
        x = audio.trim_silence(x, cfg.sample_rate, cfg.trim_db)
    if len(x) == 0 or not np.any(x):
        raise audio.AudioError(f"{name}: digital silence")
    if row.kind != "rir" and len(x) < cfg.min_duration_s * cfg.sample_rate:
        raise audio.AudioError(
            f"{name}: {len(x) / cfg.sample_rate:.2f}s of sound, shorter than {cfg.min_duration_s}s"
        )
    peak = float(np.max(np.abs(x)))
    if peak > 1.0:  # resampling overshoot: keep it lossless-ish rather than clipped
        x = x / peak
    rid = recording_id(data, row)
    entry = LakeEntry(
        speaker=row.speaker,
        kind=row.kind,
        recording_id=rid,
        clip=clip_path(row.kind, row.speaker, rid),
        num_samples=len(x),
        sample_rate=cfg.sample_rate,
        source_uri=row.uri,
        start_s=row.start_s,
        end_s=row.end_s,
        licence=row.licence,
    )
    flac = audio.encode(x, cfg.sample_rate)
    return dataclasses.replace(entry, clip_sha1=hashlib.sha1(flac).hexdigest()), flac


def read_index(lake: str) -> list[LakeEntry]:
    """Entries of a lake's ``index.jsonl``; a missing index is a clear error."""
    uri = storage.join(lake, "index.jsonl")
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri}: no lake index (run 'vsep collect' first)")
    return [LakeEntry.from_json(ln) for ln in storage.read_text(uri).splitlines() if ln.strip()]


def load_clip(lake: str, entry: LakeEntry) -> np.ndarray:
    """The clip of ``entry`` as float32 ``[samples]`` at the lake's rate."""
    data = storage.read_bytes(storage.join(lake, entry.clip))
    x, rate = audio.decode(data, entry.clip)
    if rate != entry.sample_rate:
        raise audio.AudioError(f"{entry.clip}: rate {rate} differs from the index ({entry.sample_rate})")
    return audio.to_mono(x)
