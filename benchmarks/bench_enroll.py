"""Benchmark: a speaker-conditioned model on voices it never had as targets, by enrollment clip length.

Mixtures of 8 s are built from one split of a speaker bank (``vsep bank``:
``val`` to choose settings, ``test`` once per recipe): the target is a voice of
that split (held out by speaker or by corpus; the bank's named target, which
training saw, is left out), the interference another voice of the split from
*another corpus*, at target-to-interference ratios of -5, 0 and +5 dB. The
enrollment clip is other windows of the target voice (never the ones mixed),
the first ``--enroll-seconds`` of them. Scored as ``vsep evaluate`` scores:
BSSEval v4 SDR (median over 1 s windows) and SI-SDR, improvement over the
mixture; PESQ and STOI of the target. For the timeline, every mixture is also
remixed as turns (as ``bench_timeline.py``) and the frames where the enrolled
voice speaks are compared with the truth. Two more checks: the enrolled voice
alone (how much of it the model keeps, dB lost) and the other voice alone (how
much of it comes back as the enrolled voice, dB relative to it).

    .venv/bin/python benchmarks/bench_enroll.py --model runs/c1 --bank runs/bank --split val
    .venv/bin/python benchmarks/bench_enroll.py --model runs/c1 --bank runs/bank --split test --speaker biden
    .venv/bin/python benchmarks/bench_enroll.py --model runs/c1 --bank runs/bank --split val --agreement

``--agreement`` instead measures the several-voices check of :mod:`vsep.enroll`:
the least agreement (cosine) between two of a clip's 4 s parts, for 16 s clips of one
voice and for clips of two voices (8 s each), so its threshold is chosen on
validation.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

WINDOWS = 2  # bank windows (4 s) per mixture: 8 s
TIRS = (-5.0, 0.0, 5.0)


def corpus(name: str) -> str:
    return name.split("-")[0]


def print_by_corpus(rows: list[dict], seconds_list) -> None:
    """Median SDRi by the target's and by the other voice's corpus (the splits differ in both)."""
    for seconds in seconds_list:
        for role in ("target", "other"):
            groups = defaultdict(list)
            for r in rows:
                if r["asked_s"] == seconds and np.isfinite(r["SDRi"]):
                    groups[corpus(r[role])].append(r["SDRi"])
            parts = [f"{c} {np.median(v):.2f} ({len(v)})" for c, v in sorted(groups.items())]
            print(f"{seconds:g} s, SDRi by the {role} voice's corpus: " + ", ".join(parts))


def plan(bank, per_speaker: int, enroll_windows: int, only: str | None, seed: int,
         other: str | None = None) -> list[dict]:
    """Mixtures ``{target, target_windows, enroll_windows, other, other_windows, tir_db}``; the interfering
    voice is ``other`` where given, else any voice of another corpus."""
    rng = np.random.default_rng(seed)
    speech = [i for i, n in enumerate(bank.speakers) if not n.startswith("noise:")]
    out = []
    for s in speech:
        name = bank.speakers[s]
        if (only and name != only) or (not only and name == json_target(bank)):
            continue
        own = bank.of_speaker(s)
        if len(own) < WINDOWS + 3:  # room for 8 s of target and at least 12 s of enrollment
            continue
        others = [o for o in speech if (bank.speakers[o] == other if other else corpus(bank.speakers[o]) != corpus(name))
                  and len(bank.of_speaker(o)) >= WINDOWS]
        if not others:
            raise SystemExit(f"bench_enroll: no interfering voice {other or 'of another corpus'} in this split")
        for k in range(min(per_speaker, (len(own) - 3) // WINDOWS)):
            target_w = own[k * WINDOWS : (k + 1) * WINDOWS]
            enroll_w = [int(w) for w in own if w not in target_w][:enroll_windows]
            o = others[int(rng.integers(len(others)))]
            start = int(rng.integers(0, len(bank.of_speaker(o)) - WINDOWS + 1))
            other_w = bank.of_speaker(o)[start : start + WINDOWS]
            out.append({"target": name, "target_windows": target_w.tolist(), "enroll_windows": enroll_w,
                        "other": bank.speakers[o], "other_windows": other_w.tolist(),
                        "other_enroll_windows": [int(w) for w in bank.of_speaker(o) if w not in other_w][:enroll_windows],
                        "tir_db": TIRS[len(out) % len(TIRS)]})
    return out


def enrollment(enroll, name: str, clip: np.ndarray, rate: int, window: int, as_clips: bool):
    """The checked enrollment: one clip, or (``as_clips``) a list of its ``window``-sample pieces."""
    if not as_clips:
        return enroll.checked(name, clip, rate)
    pieces = [enroll.checked(name, clip[i : i + window], rate, min_speech_s=0.0) for i in range(0, len(clip), window)]
    return enroll.checked_list(name, pieces, rate)


def json_target(bank) -> str:
    return getattr(bank, "target", "")


def audio_of(bank, windows) -> np.ndarray:
    return np.concatenate([np.asarray(bank.windows[w], np.float32) for w in windows])


def agreement(model, bank) -> int:
    """Least part-to-whole cosine of one-voice and two-voice clips; prints both distributions."""
    from vsep import enroll

    rate = model.cfg.sample_rate
    speech = [i for i, n in enumerate(bank.speakers) if not n.startswith("noise:") and len(bank.of_speaker(i)) >= 4]

    def least(clip):
        return enroll.part_agreement(model, clip)[0]

    one, two = [], []
    for j, s in enumerate(speech):
        own = bank.of_speaker(s)
        one.append(least(enroll.checked("x", audio_of(bank, own[:4]), rate)))
        other = speech[(j + 1) % len(speech)]
        mixed = np.concatenate([audio_of(bank, own[:2]), audio_of(bank, bank.of_speaker(other)[:2])])
        two.append(least(enroll.checked("x", mixed, rate)))
    for name, v in (("one voice", one), ("two voices", two)):
        q = np.percentile(v, [5, 25, 50, 75, 95])
        print(f"{name}: {len(v)} clips, least part agreement percentiles 5/25/50/75/95: "
              + " ".join(f"{x:.3f}" for x in q))
    for th in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        print(f"threshold {th}: one-voice clips refused {np.mean(np.array(one) < th):.1%}, "
              f"two-voice clips caught {np.mean(np.array(two) < th):.1%}")
    return 0


def debate_scores(debate, voices: np.ndarray, ex: dict, mixture: np.ndarray, turn_mix: np.ndarray,
                  truth: np.ndarray, rate: int, thresholds=()) -> dict:
    """Debate mode with ``voices [2, D]`` (the enrolled voice, the other): each voice's SDRi on ``mixture``
    and the enrolled voice's timeline precision / recall on ``turn_mix``."""
    from vsep import evaluate, timeline

    debate.voices.assign(voices)
    both = np.asarray(debate(mixture))  # [3, n]: the enrolled voice, the other, the rest
    target, other = ex["refs"]
    out = {}
    for key, k, refs in (("debate_SDRi", 0, [target, other]), ("debate_other_SDRi", 1, [other, target])):
        est = {"model": np.stack([both[k], mixture - both[k]]), "mixture": np.stack([mixture, mixture])}
        out[key] = evaluate.score({**ex, "refs": np.stack(refs)}, est, rate, ("target", "rest"))["methods"]["model"]["target"]["SDRi"]
    named = timeline.Tracker(rate)
    named.update(np.asarray(debate(turn_mix)))  # the target's share against the other voice and the rest
    conf = timeline.confidence(*named.energies(0))
    out.update({f"debate_timeline_{k}": v for k, v in
                timeline.frame_scores(timeline.active(conf, timeline.DEBATE_THRESHOLD), truth).items()})
    for th in thresholds:
        scores = timeline.frame_scores(timeline.active(conf, th), truth)
        out[f"debate_timeline_pr@{th:g}"] = [scores["precision"], scores["recall"]]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--bank", required=True)
    p.add_argument("--split", default="val", choices=("val", "test"))
    p.add_argument("--speaker", help="only this voice of the split as target (e.g. biden)")
    p.add_argument("--other", help="only this voice of the split as interference (e.g. trump)")
    p.add_argument("--debate", action="store_true",
                   help="also separate each mixture in debate mode, both voices named: the other voice by its stored "
                        "voice (--other, where the model stores it) or enrolled from its other windows")
    p.add_argument("--per-speaker", type=int, default=2)
    p.add_argument("--max-speakers", type=int, default=40)
    p.add_argument("--enroll-seconds", type=float, nargs="+", default=[10.0, 30.0])
    p.add_argument("--target-floor", type=float, default=None)
    p.add_argument("--shifts", type=int, default=None, help="test-time passes (vsep separate --shifts; default 2)")
    p.add_argument("--wiener", action="store_true", help="ratio-normalised masks in one-voice mode (vsep separate --wiener)")
    p.add_argument("--second-pass", action="store_true",
                   help="separate the first pass's target estimate again with the same enrollment (one-voice SDRi only)")
    p.add_argument("--windows-as-clips", action="store_true",
                   help="enroll from each 4 s window as a clip of its own, as NAME=A,B,... does with soundbites of "
                        "different recordings (each checked alone, no check across them)")
    p.add_argument("--out", help="write the rows and summary here (JSON)")
    p.add_argument("--agreement", action="store_true", help="measure the several-voices check instead")
    p.add_argument("--timeline-thresholds", type=float, nargs="*", default=[],
                   help="also report timeline precision / recall at these thresholds (to choose one on val)")
    p.add_argument("--dump-frames", metavar="NPZ",
                   help="save every turn mixture's frame powers (target, rest, clean gated target) to tune the timeline")
    args = p.parse_args()

    import tensorflow as tf  # noqa: F401 - the conditioned model runs in TensorFlow

    from vsep import bank as bank_mod
    from vsep import enroll, evaluate, inference, model_io, timeline
    from vsep.config import SeparateConfig
    from vsep.enroll_data import turns

    bank = bank_mod.load(args.bank, args.split)
    bank.target = json.loads((Path(args.bank) / "bank.json").read_text())["target"]
    model = model_io.load(args.model)
    rate = model.cfg.sample_rate
    given = {"target_floor": args.target_floor, "shifts": args.shifts}  # None: the SeparateConfig default
    scfg = SeparateConfig(wiener=args.wiener, **{k: v for k, v in given.items() if v is not None})
    window_s = bank.windows.shape[1] / rate
    longest = int(np.ceil(max(args.enroll_seconds) / window_s))
    if args.agreement:
        return agreement(model, bank)
    mixes = plan(bank, args.per_speaker, longest, args.speaker, seed=0, other=args.other)
    targets = sorted({m["target"] for m in mixes})[: args.max_speakers]
    mixes = [m for m in mixes if m["target"] in targets]
    fn = inference.build_separate_fn(model, wiener=scfg.wiener, shifts=scfg.shifts, precision=scfg.precision,
                                     target_floor=scfg.target_floor, embeddings=np.zeros((1, model.cfg.embed_dim)))
    rows, refused, dumped = [], defaultdict(int), {}
    debate = None
    if args.debate:  # both voices at once: the enrolled one, and the other (stored or enrolled)
        stored = model_io.read_embeddings(args.model)
        debate = inference.build_separate_fn(model, wiener=scfg.wiener, shifts=scfg.shifts, precision=scfg.precision,
                                             target_floor=scfg.target_floor, embeddings=np.zeros((2, model.cfg.embed_dim)))
    for m in mixes:
        target, other = audio_of(bank, m["target_windows"]), audio_of(bank, m["other_windows"])
        other *= np.sqrt(np.sum(target**2) / (np.sum(other**2) * 10 ** (m["tir_db"] / 10) + 1e-12))
        mixture = target + other
        rng = np.random.default_rng(zlib.crc32(json.dumps(m).encode()))
        gate = turns(len(target), rate, rng)
        turn_mix = target * gate + other * turns(len(target), rate, rng, avoid=gate)
        for seconds in args.enroll_seconds:
            clip = audio_of(bank, m["enroll_windows"])[: int(seconds * rate)]
            try:
                emb = enroll.embed_clip(model, m["target"], enrollment(enroll, m["target"], clip, rate,
                                                                     bank.windows.shape[1], args.windows_as_clips))
            except enroll.EnrollError:  # refused as several voices (or too little speech): counted, not scored
                refused[seconds] += 1
                continue
            fn.voices.assign(emb[None])
            est = np.asarray(fn(mixture))
            if args.second_pass:  # the target estimate again; the rest is what the mixture has besides
                again = np.asarray(fn(est[0]))[0]
                est = np.stack([again, mixture - again])
            ex = {"id": m["target"], "kind": "2-speaker", "tir_db": m["tir_db"], "refs": np.stack([target, other])}
            row = evaluate.score(ex, {"model": est, "mixture": np.stack([mixture, mixture])}, rate, ("target", "rest"))
            tracker = timeline.Tracker(rate)
            tracker.update(np.asarray(fn(turn_mix)))
            conf = timeline.confidence(*tracker.energies(), quiet_db=timeline.ENROLLED_QUIET_DB)
            if args.dump_frames:
                clean = timeline.Tracker(rate)
                clean.update(np.stack([target * gate, np.zeros_like(target)]))
                key = f"{len(dumped) // 3:04d}_{seconds:g}"
                dumped.update({f"{key}_target": tracker.energies()[0], f"{key}_rest": tracker.energies()[1],
                               f"{key}_clean": clean.energies()[0]})
            truth = timeline.reference_activity(target * gate, rate, len(conf))
            frames = timeline.frame_scores(timeline.active(conf, timeline.ENROLLED_THRESHOLD), truth)
            sweep = {f"timeline_pr@{th:g}": [timeline.frame_scores(timeline.active(conf, th), truth)[k]
                                            for k in ("precision", "recall")] for th in args.timeline_thresholds}
            alone = np.asarray(fn(target))[0]  # the enrolled voice alone: kept whole?
            leak = np.asarray(fn(other))[0]  # another voice alone: given back as the enrolled one?
            extra = {"alone_loss_db": float(10 * np.log10(np.sum(target**2) / (np.sum(alone**2) + 1e-12))),
                     "absent_leak_db": float(10 * np.log10(np.sum(leak**2) / (np.sum(other**2) + 1e-12) + 1e-12))}
            other_emb = None
            if debate is not None:
                try:
                    if m["other"] in stored:
                        other_emb = np.asarray(stored[m["other"]], np.float32)
                    elif not m["other_enroll_windows"]:
                        raise enroll.EnrollError(f"{m['other']}: no other windows to enroll from")
                    else:
                        other_clip = audio_of(bank, m["other_enroll_windows"])[: int(seconds * rate)]
                        other_emb = enroll.embed_clip(model, m["other"], enroll.checked(m["other"], other_clip, rate))
                except enroll.EnrollError:  # the other voice's clip refused: this row has no debate figures
                    refused[f"other {seconds:g}"] += 1
            if other_emb is not None:
                extra.update(debate_scores(debate, np.stack([emb, other_emb]), ex, mixture, turn_mix, truth, rate,
                                           args.timeline_thresholds))
            rows.append({**extra, **{k: m[k] for k in ("target", "other", "tir_db")}, "enroll_s": round(len(clip) / rate, 1),
                         "asked_s": seconds, **{k: v for k, v in row["methods"]["model"]["target"].items()},
                         "timeline_precision": frames["precision"], "timeline_recall": frames["recall"], **sweep})
    summary = defaultdict(dict)
    for seconds in args.enroll_seconds:
        sel = [r for r in rows if r["asked_s"] == seconds]
        for key in ("SDRi", "SI-SDRi", "PESQ", "STOI", "timeline_precision", "timeline_recall", "alone_loss_db",
                    "absent_leak_db", "debate_SDRi", "debate_other_SDRi", "debate_timeline_precision",
                    "debate_timeline_recall"):
            vals = [r[key] for r in sel if key in r and np.isfinite(r[key])]
            summary[seconds][key] = round(float(np.median(vals)), 3) if vals else None
        summary[seconds]["examples"] = len(sel)
        summary[seconds]["refused"] = refused[seconds]
        summary[seconds]["enroll_s_median"] = float(np.median([r["enroll_s"] for r in sel])) if sel else None
    print(f"model {args.model}  bank {args.bank} split {args.split}  {len(targets)} target voices, "
          f"{len(mixes)} mixtures  floor {scfg.target_floor}")
    print("| enrollment | examples (clips refused) | SDRi | SI-SDRi | PESQ | STOI | timeline P | timeline R | alone: loss dB "
          "| other alone: leak dB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seconds, s in summary.items():
        print(f"| {seconds:g} s (median {s['enroll_s_median']}) | {s['examples']} ({s['refused']}) | {s['SDRi']} | {s['SI-SDRi']} | "
              f"{s['PESQ']} | {s['STOI']} | {s['timeline_precision']} | {s['timeline_recall']} | "
              f"{s['alone_loss_db']} | {s['absent_leak_db']} |")
    if args.debate:
        for seconds, s in summary.items():
            print(f"debate mode, {seconds:g} s: SDRi of the enrolled voice {s['debate_SDRi']}, of the other "
                  f"{s['debate_other_SDRi']}; timeline of the enrolled voice P / R {s['debate_timeline_precision']} / "
                  f"{s['debate_timeline_recall']} (other clips refused: {refused.get(f'other {seconds:g}', 0)})")
    for th in args.timeline_thresholds if args.debate else ():
        for seconds in args.enroll_seconds:
            pr = np.array([r[f"debate_timeline_pr@{th:g}"] for r in rows
                           if r["asked_s"] == seconds and f"debate_timeline_pr@{th:g}" in r], float)
            if len(pr):
                print(f"debate mode, timeline threshold {th:g}, {seconds:g} s: precision / recall (medians) "
                      f"{np.nanmedian(pr[:, 0]):.3f} / {np.nanmedian(pr[:, 1]):.3f}")
    for th in args.timeline_thresholds:
        for seconds in args.enroll_seconds:
            pr = np.array([r[f"timeline_pr@{th:g}"] for r in rows if r["asked_s"] == seconds], float)
            if len(pr):
                print(f"timeline threshold {th:g}, {seconds:g} s: precision / recall (medians) "
                      f"{np.nanmedian(pr[:, 0]):.3f} / {np.nanmedian(pr[:, 1]):.3f}")
    print_by_corpus(rows, args.enroll_seconds)
    if args.dump_frames:
        np.savez_compressed(args.dump_frames, **dumped)
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
