"""Purify a prepared data set: leave out training examples whose "clean" target is not the target alone.

Several target clips hold interviewers, crowds or music inside the reference,
which teaches a model to keep them. A first model (default: the bundled one)
separates every train window's target reference on its own (nothing to remove,
no target floor): a window whose reference it splits, keeping less than
``--keep-db`` of its energy as the target, holds something else; the worst
``--drop`` fraction of the target windows (and at most those under
``--keep-db``) are dropped with every mixture made from them. Val and test
are linked unchanged, so scores stay comparable. Writes a data directory
with its own manifest and ``purified.json`` (every target window's score,
the dropped ones first, with their source, so they can be listened to).

    .venv/bin/python tools/purify_data.py --data runs/data_xs --output runs/data_xs_pure --drop 0.1

The judge was trained on the same windows, so it is lenient with what it
memorised: what it still rejects is strongly contaminated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def window_of(example_id: str) -> str:
    """The window an example was mixed from (mixer: ``<window_id>#<k>``)."""
    return example_id.rsplit("#", 1)[0]


def score_windows(files: list[Path], separate, gzipped: bool) -> dict[str, dict]:
    """``{window id: {"kept_db", "target_id"}}`` for every train window with a target reference."""
    from vsep import schema, shards

    scores: dict[str, dict] = {}
    for path in files:
        for record in shards.read_records(path.read_bytes(), gzipped):
            ex = schema.decode(record)
            w, target = window_of(ex["example_id"]), ex["target"]
            energy = float(np.sum(target.astype(np.float64) ** 2))
            if w in scores or energy < 1e-6:
                continue
            est = np.asarray(separate(target.astype(np.float32)))[0]
            kept = float(np.sum(est.astype(np.float64) ** 2)) / energy
            scores[w] = {"kept_db": round(10 * np.log10(kept + 1e-12), 3), "target_id": ex["target_id"]}
    return scores


def choose(scores: dict[str, dict], drop: float, keep_db: float) -> set[str]:
    """The windows to drop: the ``drop`` fraction that keeps least, of those below ``keep_db``."""
    ranked = sorted(scores, key=lambda w: scores[w]["kept_db"])
    worst = ranked[: int(round(drop * len(ranked)))]
    return {w for w in worst if scores[w]["kept_db"] < keep_db}


def write_split(files: list[Path], out: Path, dropped: set[str], gzipped: bool) -> tuple[list[dict], int]:
    """Copies of ``files`` under ``out`` without the examples of ``dropped`` windows -> (shard infos, kept)."""
    from vsep import schema, shards

    infos, kept = [], 0
    for path in files:
        with shards.ShardWriter(str(out / path.name), gzipped) as w:
            for record in shards.read_records(path.read_bytes(), gzipped):
                if window_of(schema.decode(record)["example_id"]) not in dropped:
                    w.write(record)
        infos.append(w.info.to_dict())
        kept += w.records
    return infos, kept


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a prepared data directory (vsep prepare)")
    p.add_argument("--output", required=True)
    p.add_argument("--model", help="the judge (default: the bundled model)")
    p.add_argument("--drop", type=float, default=0.1, help="largest fraction of target windows to drop")
    p.add_argument("--keep-db", type=float, default=-1.0,
                   help="drop only windows whose reference keeps less than this (dB) as the target")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from vsep import runtime
    from vsep.config import SeparateConfig
    from vsep.manifest import read_manifest

    if not 0 <= args.drop < 1:
        raise SystemExit("purify_data: --drop must lie in [0, 1)")
    src, out = Path(args.data), Path(args.output)
    manifest = read_manifest(str(src))
    if not manifest["shards"].get("train"):
        raise SystemExit(f"purify_data: {src} has no train shards")
    gzipped = manifest["config"].get("compression", "gzip") == "gzip"
    served = runtime.load(args.model, SeparateConfig(shifts=1, target_floor=0.0))
    if served.cfg.target != manifest["config"].get("target"):
        raise SystemExit(f"purify_data: the judge separates {served.cfg.target!r}, the data's target is "
                         f"{manifest['config'].get('target')!r}")
    train = [src / name for name in manifest["shards"]["train"]]
    t0 = time.time()
    scores = score_windows(train, served.mono, gzipped)
    dropped = choose(scores, args.drop, args.keep_db)
    out.mkdir(parents=True, exist_ok=True)
    infos, kept = write_split(train, out, dropped, gzipped)
    for split in ("val", "test"):
        for name in manifest["shards"].get(split, []):
            link = out / name
            if not link.exists():
                os.symlink(os.path.relpath(src / name, out), link)
    doc = {k: v for k, v in manifest.items() if k not in ("prefix", "files", "skipped")}
    doc["shard_info"] = {**manifest["shard_info"], "train": infos}
    doc["counts"] = {**manifest["counts"], "train": kept}
    doc["purified"] = {"from": str(src), "judge": args.model or "bundled", "drop": args.drop,
                       "keep_db": args.keep_db, "windows": len(scores), "dropped_windows": len(dropped),
                       "examples_before": manifest["counts"]["train"], "examples_after": kept}
    (out / "manifest.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
    ranked = sorted(scores.items(), key=lambda kv: kv[1]["kept_db"])
    (out / "purified.json").write_text(json.dumps(
        {"dropped": sorted(dropped), "scores": dict(ranked)}, indent=1))
    kept_db = np.array([s["kept_db"] for s in scores.values()])
    print(f"purify_data: {len(scores)} target windows scored in {time.time() - t0:.0f} s; median kept "
          f"{np.median(kept_db):.2f} dB, 10th percentile {np.percentile(kept_db, 10):.2f} dB; dropped "
          f"{len(dropped)} windows, {manifest['counts']['train'] - kept} of {manifest['counts']['train']} "
          f"train examples -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
