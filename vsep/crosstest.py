"""``vsep crosstest``: the cross-source evaluation set, from recordings held out whole.

    vsep crosstest --lake runs/lake --data runs/data --output runs/xtest [--split test]

A prepared data set names patterns of recordings held out whole from training
(``prepare --val-holdout / --test-holdout``: target sources, corpora of voices,
noise types, rooms). This command mixes only those, so its scores say what a
user meets: the target through microphones and rooms training never heard,
against voices and noises training never heard. Conditions:

- ``voices``: the held-out target against a voice of a held-out corpus;
- ``noise``: the held-out target in a held-out noise type;
- ``room``: target and voice in a held-out room, with held-out noise under them;
- ``soundalike``: the held-out target against another of its held-out recordings
  with the voice shifted 8-15 % up or down (pitch and formants: a sound-alike).

Target-to-interference ratios cycle through ``--tir-db``. Every example is a
folder ``OUT/<condition>-NNN/`` with ``mixture.wav``, ``<target>.wav``,
``rest.wav`` and ``meta.json`` (condition, ratio, sources), the layout
``vsep evaluate --folder`` scores per condition; ``OUT/crosstest.json``
records the config and the source files used. A condition the data set cannot
make (no held-out noise, one held-out target recording) is one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from vsep import config, lake, mixing
from vsep.audio import shift_voice
from vsep.config import CrossTestConfig, PrepareConfig

NEEDS = {
    "voices": ("target", "voices"),
    "noise": ("target", "noise"),
    "room": ("target", "voices", "noise", "rir"),
    "soundalike": ("target",),
}


def held_out(lake_root: str, prepare_cfg: dict, split: str) -> dict[str, list[lake.LakeEntry]]:
    """The lake's recordings that ``split``'s held-out patterns name, by role."""
    patterns = prepare_cfg.get(f"{split}_holdout") or []
    if not patterns:
        raise ValueError(f"the data set holds no whole sources out for {split} "
                         f"(prepare --{split}-holdout): a cross-source set needs them")
    target = prepare_cfg["target"]
    out: dict[str, list[lake.LakeEntry]] = {"target": [], "voices": [], "noise": [], "rir": []}
    for e in lake.read_index(lake_root):
        if not any(fnmatchcase(mixing.source_name(e.speaker, e.source_uri), p) for p in patterns):
            continue
        role = "rir" if e.kind == "rir" else "noise" if e.kind == "noise" else (
            "target" if e.speaker == target else "voices")
        out[role].append(e)
    return out


class Tracks:
    """Speech and noise tracks of one length from lake clips (decoded once, cached)."""

    def __init__(self, lake_root: str, cfg: CrossTestConfig, rate: int) -> None:
        self.lake_root, self.n, self.rate = lake_root, int(cfg.seconds * rate), rate
        self.meter = mixing.Loudness(rate)
        self.norm_cfg = PrepareConfig(sample_rate=rate)
        self.cache: dict[str, np.ndarray] = {}

    def clip(self, e: lake.LakeEntry) -> np.ndarray:
        if e.clip not in self.cache:
            self.cache[e.clip] = lake.load_clip(self.lake_root, e)
        return self.cache[e.clip]

    def speech(self, rng: np.random.Generator, pool: list[lake.LakeEntry], shift: float = 0.0) -> tuple:
        """``(track [n], source files)``: normalised pieces of random clips, short pauses between them."""
        track, pos, used = np.zeros(self.n, np.float32), 0, []
        for _ in range(200):
            if pos >= self.n - int(0.4 * self.rate):
                break
            e = pool[int(rng.integers(len(pool)))]
            x = self.clip(e)
            if shift:
                x = shift_voice(x, shift)
            take = min(len(x), self.n - pos)
            start = int(rng.integers(0, len(x) - take + 1))
            norm = mixing.normalize(x[start : start + take], self.meter, self.norm_cfg) if take >= 0.4 * self.rate \
                else None
            if norm is None:
                continue
            track[pos : pos + take] = norm[0]
            used.append(e.source_uri)
            pos += take + int(rng.uniform(0.05, 0.3) * self.rate)
        return track, used

    def noise(self, rng: np.random.Generator, pool: list[lake.LakeEntry]) -> tuple:
        for _ in range(20):
            e = pool[int(rng.integers(len(pool)))]
            seg = mixing.cut_segment(rng, self.clip(e), self.n, loop=True)
            norm = mixing.normalize(seg, self.meter, self.norm_cfg)
            if norm is not None:
                return norm[0], [e.source_uri]
        raise ValueError("the held-out noise recordings are silent")


def example(tracks: Tracks, pools: dict, condition: str, tir_db: float, rng: np.random.Generator) -> dict:
    """One mixture of ``condition``: ``mixture``, ``target``, ``rest`` ``[n]`` and its metadata."""
    zeros = np.zeros(tracks.n, np.float32)
    if condition == "soundalike":
        ids = sorted({e.recording_id for e in pools["target"]})
        chosen = ids[int(rng.integers(len(ids)))]
        own = [e for e in pools["target"] if e.recording_id == chosen]
        others = [e for e in pools["target"] if e.recording_id != chosen]
        target, t_src = tracks.speech(rng, own)
        percent = float(rng.uniform(8, 15) * rng.choice([-1, 1]))
        other, o_src = tracks.speech(rng, others, shift=percent)
        noise, n_src, extra = zeros, [], {"shift_percent": round(percent, 2)}
    else:
        target, t_src = tracks.speech(rng, pools["target"])
        other, o_src = tracks.speech(rng, pools["voices"]) if condition in ("voices", "room") else (zeros, [])
        noise, n_src = tracks.noise(rng, pools["noise"]) if condition in ("noise", "room") else (zeros, [])
        extra = {}
        if condition == "room":
            room = pools["rir"][int(rng.integers(len(pools["rir"])))]
            target, other = (mixing.reverberate(x, tracks.clip(room)) for x in (target, other))
            target, other = (mixing.normalize(x, tracks.meter, tracks.norm_cfg)[0] for x in (target, other))
            extra = {"room": room.source_uri}
    kind = {"voices": "speech", "noise": "noise", "room": "both", "soundalike": "speech"}[condition]
    plan = mixing.MixPlan(kind=kind, tir_db=tir_db, snr_db=5.0, reverb=False)
    g_other, g_noise = mixing.interference_gains(plan)
    sources, _ = mixing.mix(target, other, noise, (0.0, g_other, g_noise), max_peak=0.99)
    meta = {"condition": condition, "tir_db": tir_db, "target_sources": sorted(set(t_src)),
            "other_sources": sorted(set(o_src)), "noise_sources": n_src, **extra}
    return {"mixture": sources["mixture"], "target": sources["target"],
            "rest": sources["other"] + sources["noise"], "meta": meta}


def check_conditions(pools: dict, conditions: Sequence[str], split: str) -> None:
    for c in conditions:
        missing = [role for role in NEEDS[c] if not pools[role]]
        if missing:
            raise ValueError(f"condition {c!r} needs held-out {' and '.join(missing)} recordings in the {split} "
                             "split, and the data set holds none out")
    if "soundalike" in conditions and len({e.recording_id for e in pools["target"]}) < 2:
        raise ValueError(f"condition 'soundalike' needs two held-out target recordings in the {split} split")


def build(lake_root: str, manifest: dict, out: str, cfg: CrossTestConfig) -> list[Path]:
    """Write the set under ``out``; returns the example folders."""
    import soundfile as sf

    cfg.validate()
    prep = manifest["config"]
    pools = held_out(lake_root, prep, cfg.split)
    check_conditions(pools, cfg.conditions, cfg.split)
    rate, target = prep["sample_rate"], prep["target"]
    tracks = Tracks(lake_root, cfg, rate)
    folders = []
    for condition in cfg.conditions:
        for i in range(cfg.per_condition):
            rng = mixing.rng_for(cfg.seed, "crosstest", condition, i)
            ex = example(tracks, pools, condition, float(cfg.tir_db[i % len(cfg.tir_db)]), rng)
            folder = Path(out) / f"{condition}-{i:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for name, key in (("mixture", "mixture"), (target, "target"), ("rest", "rest")):
                sf.write(folder / f"{name}.wav", ex[key], rate, subtype="FLOAT")
            (folder / "meta.json").write_text(json.dumps(ex["meta"], indent=1))
            folders.append(folder)
    used = {role: sorted({e.source_uri for e in pools[role]}) for role in pools}
    Path(out, "crosstest.json").write_text(
        json.dumps({"config": config.to_dict(cfg), "target": target, "holdout": prep.get(f"{cfg.split}_holdout"),
                    "sources": used}, indent=1))
    return folders


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vsep crosstest", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lake", required=True, help="the lake the data set was prepared from")
    p.add_argument("--data", required=True, help="the prepared data set (its manifest names the held-out patterns)")
    p.add_argument("--output", required=True, help="folder for the examples")
    config.add_arguments(p, CrossTestConfig)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from vsep.manifest import read_manifest
    from vsep.storage import StorageError

    args = build_parser().parse_args(argv)
    try:
        cfg = config.from_namespace(CrossTestConfig, args)
        folders = build(args.lake, read_manifest(args.data), args.output, cfg)
    except (ValueError, FileNotFoundError, StorageError) as e:
        print(f"vsep crosstest: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"crosstest  {len(folders)} mixtures  {args.output}  ({', '.join(cfg.conditions)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
