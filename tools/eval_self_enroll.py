"""A speaker-conditioned model on the cross-source set, enrolled from the held-out recording chains themselves.

A user who separates one voice out of a recording can first mark 10-30 s where that voice speaks alone *in
material like it* (the same broadcast, the same soundboard) and enroll with it, so the model's notion of
the target comes from the recording chain it is about to hear, not from the chains it trained on. This
measures that workflow on a ``vsep crosstest`` folder: for every mixture, the enrollment clip is the
first ``--seconds`` of speech of held-out target recordings of the same split that the mixture does not
use (neither as target nor as sound-alike), shuffled per mixture. Scored as ``vsep evaluate`` scores
(BSSEval v4, SI-SDR, PESQ, STOI), written in its layout, so ``tools/compare_evals.py`` pairs it with an
evaluate run of the same folder.

``--source mixture`` needs no clip from the user: a first pass with the model's stored voice separates
the mixture, the frames where that estimate holds most of the mixture's energy (at least ``--share``)
are cut from it, embedded, and a second pass separates with that embedding (twice the model's work).

    .venv/bin/python tools/eval_self_enroll.py --model runs/c3 --lake runs/lake --folder runs/xtest_val \
        --seconds 30 --output runs/eval_val_c3_self30
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np

from vsep import enroll, evaluate, inference, lake, model_io


def target_pool(lake_root: str, folder: str) -> tuple[str, list[lake.LakeEntry]]:
    """``(target name, the lake entries of the held-out target recordings the folder was mixed from)``."""
    info = json.loads(Path(folder, "crosstest.json").read_text())
    uris = set(info["sources"]["target"])
    pool = [e for e in lake.read_index(lake_root) if e.source_uri in uris and e.kind == "speech"]
    if not pool:
        raise ValueError(f"{folder}: none of its target recordings is in the lake {lake_root}")
    return info["target"], pool


def enrollment(lake_root: str, pool: list[lake.LakeEntry], exclude: set[str], seconds: float, rate: int,
               seed: int) -> np.ndarray:
    """``[samples]``: speech (silences left out) of shuffled pool recordings not in ``exclude``."""
    rng = np.random.default_rng(seed)
    order = [pool[i] for i in rng.permutation(len(pool)) if pool[i].source_uri not in exclude]
    parts, have = [], 0
    for e in order:
        x = lake.load_clip(lake_root, e)
        speech = enroll.speech_frames(x, rate)
        frame = max(1, int(enroll.FRAME_S * rate))
        x = x[: len(speech) * frame][np.repeat(speech, frame)]
        parts.append(x)
        have += len(x)
        if have >= seconds * rate:
            break
    if have < enroll.MIN_SPEECH_S * rate:
        raise ValueError(f"only {have / rate:.1f} s of held-out target speech outside the mixture")
    return np.concatenate(parts)[: int(seconds * rate)]


def from_estimate(mixture: np.ndarray, target: np.ndarray, rate: int, share: float) -> np.ndarray:
    """``[samples]``: the 20 ms frames of the target estimate ``target [n]`` that hold at least ``share``
    of the mixture's ``[n]`` energy and are speech (:func:`vsep.enroll.speech_frames`)."""
    frame = max(1, int(enroll.FRAME_S * rate))
    n = min(len(mixture), len(target)) // frame * frame
    t, m = target[:n].reshape(-1, frame), mixture[:n].reshape(-1, frame)
    keep = ((t**2).mean(axis=1) >= share * (m**2).mean(axis=1)) & enroll.speech_frames(target[:n], rate)
    return t[keep].reshape(-1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a speaker-conditioned model directory")
    p.add_argument("--lake", required=True)
    p.add_argument("--folder", required=True, help="a vsep crosstest folder")
    p.add_argument("--output", required=True)
    p.add_argument("--seconds", type=float, default=30.0, help="enrollment speech per mixture")
    p.add_argument("--shifts", type=int, default=2)
    p.add_argument("--target-floor", type=float, default=0.3)
    p.add_argument("--precision", default="float32")
    p.add_argument("--source", choices=("heldout", "mixture"), default="heldout",
                   help="enroll from held-out recordings the mixture does not use, or from the mixture itself")
    p.add_argument("--share", type=float, default=0.7, help="--source mixture: least share of the frame's energy")
    p.add_argument("--min-seconds", type=float, default=1.0,
                   help="--source mixture: fewer seconds than this keep the stored voice")
    args = p.parse_args(argv)

    model = model_io.load(args.model)
    cfg = model.cfg
    if not cfg.embed_dim:
        print(f"{args.model}: not a speaker-conditioned model", file=sys.stderr)
        return 2
    target, pool = target_pool(args.lake, args.folder)
    first = model_io.read_embeddings(args.model)[cfg.target][None].astype(np.float32)
    separate = inference.build_separate_fn(model, shifts=args.shifts, target_floor=args.target_floor,
                                           precision=args.precision, embeddings=first)
    names = (target, "rest")
    out = Path(args.output)
    (out / "examples").mkdir(parents=True, exist_ok=True)
    rows, refused = [], 0
    for ex in evaluate.examples_from_folder(args.folder, target, cfg.sample_rate):
        if args.source == "mixture":
            separate.voices.assign(first)
            clip = from_estimate(ex["mixture"], np.asarray(separate(ex["mixture"]))[0], cfg.sample_rate, args.share)
            if len(clip) < args.min_seconds * cfg.sample_rate:
                refused += 1  # too little of the target alone: the stored voice stays
                emb = first[0]
            else:
                whole = np.asarray(model.embed(clip[None]))[0]
                emb = whole / (np.linalg.norm(whole) + 1e-8)
        else:
            meta = json.loads(Path(args.folder, ex["id"], "meta.json").read_text())
            exclude = set(meta.get("target_sources", [])) | set(meta.get("other_sources", []))
            clip = enrollment(args.lake, pool, exclude, args.seconds, cfg.sample_rate, zlib.crc32(ex["id"].encode()))
            try:
                emb = enroll.embed_clip(model, target, clip)
            except enroll.EnrollError:  # the several-voices check refused it: a user would pick another clip
                refused += 1
                whole = np.asarray(model.embed(clip[None]))[0]
                emb = whole / (np.linalg.norm(whole) + 1e-8)
        separate.voices.assign(emb[None].astype(np.float32))
        est = {"model": np.asarray(separate(ex["mixture"])), "mixture": np.stack([ex["mixture"]] * 2)}
        row = evaluate.score(ex, est, cfg.sample_rate, names)
        row["enrollment_s"] = round(len(clip) / cfg.sample_rate, 2)
        rows.append(row)
        (out / "examples" / f"{ex['id']}.json").write_text(json.dumps(row))
    how = {"heldout": "held-out target recordings not in the mixture",
           "mixture": f"frames of a first pass's target estimate holding >= {args.share} of the mixture's energy"}
    summary = {"model": args.model, "folder": args.folder, "enrolled": how[args.source],
               "enrollment_seconds": args.seconds if args.source == "heldout" else None,
               "refused_or_too_short": refused,
               "separate": {"shifts": args.shifts, "target_floor": args.target_floor, "precision": args.precision,
                            "runtime": "tf"},
               "examples": len(rows), "groups": evaluate.summarise(rows, names)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    table = evaluate.markdown(summary["groups"], target)
    (out / "summary.md").write_text(table)
    print(table)
    print(json.dumps({k: summary[k] for k in ("examples", "refused_or_too_short", "enrollment_seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
