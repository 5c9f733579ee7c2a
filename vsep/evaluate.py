"""``vsep evaluate``: BSSEval v4 and SI-SDR of a model against baselines, on the same examples.

    vsep evaluate [--model DIR] --data PREFIX --output-dir OUT     # the test split of a prepared set
    vsep evaluate --data PREFIX --split val --shifts 2 -o OUT        # choose inference settings on val
    vsep evaluate [--model DIR] --folder DIR --output-dir OUT      # DIR/<name>/mixture.wav + <target>.wav, rest.wav

Methods, on the same examples: the model; the unprocessed mixture; the oracle
ideal ratio and binary masks at the model's STFT (the upper bound of masking);
supervised NMF (bases learned on the training split, ``vsep/nmf.py``).
Metrics per example and source: museval BSSEval v4 SDR, SIR, SAR, ISR (window
and hop of one second at the evaluation rate; median over windows) and SI-SDR,
each also as improvement over the mixture. Examples whose reference is silent
(BSSEval rejects them) are skipped for that source and counted.

Writes ``OUT/examples/<id>.json`` (museval's JSON layout per method), ``OUT/summary.json``
and ``OUT/summary.md`` (medians and means per method, overall and per
condition: mixture kind and target-to-interference ratio), and
``OUT/report.html`` with spectrograms, masks and audio players for the best,
median and worst examples.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from vsep import config
from vsep.enroll import EnrollError, enroll_option

METRICS = ("SDR", "SIR", "SAR", "ISR")
SILENT = 1e-8


# ------------------------------------------------------------ examples


def examples_from_dataset(
    prefix: str, target: str, rate: int, limit: int | None, split: str = "test"
) -> Iterator[dict[str, Any]]:
    """Examples of one split of a prepared set: ``mixture [n]``, ``refs [2, n]``, id and condition."""
    import tensorflow as tf

    from vsep import schema
    from vsep.manifest import read_manifest

    manifest = read_manifest(prefix)
    data_rate = manifest["config"]["sample_rate"]
    if data_rate != rate:
        raise ValueError(f"data sample rate {data_rate} Hz differs from the model's {rate} Hz")
    files = manifest["files"].get(split, [])
    if not files or manifest["counts"].get(split, 0) == 0:
        raise ValueError(f"{prefix}: the {split} split is empty")
    compression = "GZIP" if files[0].endswith(".gz") else ""
    ds = tf.data.TFRecordDataset(files, compression_type=compression).map(schema.parse)
    for i, ex in enumerate(ds):
        if limit is not None and i >= limit:
            return
        rest = (ex["other"] + ex["noise"]).numpy()
        yield {
            "id": ex["example_id"].numpy().decode(),
            "mixture": ex["mixture"].numpy(),
            "refs": np.stack([ex["target"].numpy(), rest]),
            "kind": ex["kind"].numpy().decode(),
            "tir_db": float(ex["tir_db"].numpy()),
        }


def examples_from_folder(folder: str, target: str, rate: int) -> Iterator[dict[str, Any]]:
    """``folder/<name>/mixture.wav`` with ``<target>.wav`` and ``rest.wav`` references (local or ``gs://``)."""
    from vsep import audio, storage

    if "://" not in folder and not os.path.isdir(folder):
        raise ValueError(f"{folder}: no such folder")
    root = folder.rstrip("/")
    rels = (f[len(root) :].lstrip("/").replace(os.sep, "/") for f in storage.list_files(root))
    names = sorted(rel.split("/")[0] for rel in rels if rel.count("/") == 1 and rel.endswith("/mixture.wav"))
    if not names:
        raise ValueError(f"{folder}: no <name>/mixture.wav found")

    def load(name: str, source: str) -> np.ndarray:
        uri = storage.join(root, name, f"{source}.wav")
        return audio.load(storage.read_bytes(uri), rate, uri)

    for name in names:
        try:
            mix = load(name, "mixture")
            refs = [load(name, s) for s in (target, "rest")]
        except (OSError, audio.AudioError) as e:
            print(f"vsep evaluate: skipped {name}: {str(e).splitlines()[0]}", file=sys.stderr)
            continue
        if len({len(mix), *(len(r) for r in refs)}) != 1:
            print(f"vsep evaluate: skipped {name}: mixture and references differ in length", file=sys.stderr)
            continue
        meta = _meta(storage.join(root, name, "meta.json"))
        yield {"id": name, "mixture": mix, "refs": np.stack(refs), "kind": meta.get("condition", "folder"),
               "tir_db": float(meta.get("tir_db", float("nan")))}


def _meta(uri: str) -> dict[str, Any]:
    """An example folder's ``meta.json`` (``vsep crosstest`` writes condition and ratio), or ``{}``."""
    from vsep import storage

    if not storage.exists(uri):
        return {}
    try:
        return json.loads(storage.read_text(uri))
    except ValueError:
        return {}


# ------------------------------------------------------------ methods


def oracle_masks(model) -> Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    """Ideal ratio and binary masks at the model's STFT: ``(mixture [n], refs [2, n])`` -> estimates."""
    import tensorflow as tf

    from vsep.stft import magnitude

    def run(mixture: np.ndarray, refs: np.ndarray) -> dict[str, np.ndarray]:
        n = len(mixture)
        spec = model.stft(tf.constant(mixture[None]))
        mags = tf.stack([magnitude(model.stft(tf.constant(r[None]))) for r in refs], axis=-1)  # [1,T,F,2]
        irm = mags / (tf.reduce_sum(mags, axis=-1, keepdims=True) + 1e-8)
        ibm = tf.one_hot(tf.argmax(mags, axis=-1), 2)
        out = {}
        for name, masks in (("oracle_irm", irm), ("oracle_ibm", ibm)):
            est = [model.istft(spec * masks[..., k : k + 1], length=n)[0].numpy() for k in range(2)]
            out[name] = np.stack(est)
        return out

    return run


def nmf_method(model, train_prefix: str | None, out_dir: str, components: int = 32):
    """Supervised NMF (bases learned on the training split's target and interference), or None.

    Bases are cached as ``<out_dir>/nmf_bases.npz``.
    """
    import tensorflow as tf

    from vsep import nmf, storage
    from vsep.stft import magnitude

    def mag(x: np.ndarray) -> np.ndarray:  # [n] -> [F, T]
        return magnitude(model.stft(tf.constant(x[None], tf.float32)))[0].numpy().T

    cache = storage.join(out_dir, "nmf_bases.npz")
    if storage.exists(cache):
        sep = nmf.NMFSeparator.load(io.BytesIO(storage.read_bytes(cache)))
    else:
        if not train_prefix:
            return None
        from vsep.manifest import read_manifest

        try:
            files = read_manifest(train_prefix)["files"].get("train", [])
        except (FileNotFoundError, storage.StorageError):
            return None
        if not files:
            return None
        compression = "GZIP" if files[0].endswith(".gz") else ""
        from vsep import schema

        ds = tf.data.TFRecordDataset(files, compression_type=compression).map(schema.parse).take(400)
        pairs = ((ex["target"].numpy(), (ex["other"] + ex["noise"]).numpy()) for ex in ds)
        sep = nmf.fit_from_examples(pairs, mag, components=components)
        buf = io.BytesIO()
        sep.save(buf)
        storage.write_bytes(cache, buf.getvalue())

    def run(mixture: np.ndarray) -> np.ndarray:
        spec = model.stft(tf.constant(mixture[None], tf.float32))
        masks = sep.masks(magnitude(spec)[0].numpy().T)  # [2, F, T]
        est = [model.istft(spec * tf.constant(masks[k].T[None, ..., None]), length=len(mixture))[0].numpy()
               for k in range(2)]
        return np.stack(est)

    return run


# ------------------------------------------------------------ metrics


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    ref = ref - ref.mean()
    est = est - est.mean()
    proj = np.dot(est, ref) / (np.dot(ref, ref) + 1e-12) * ref
    noise = est - proj
    return float(10 * np.log10((np.sum(proj**2) + 1e-12) / (np.sum(noise**2) + 1e-12)))


def bss(refs: np.ndarray, est: np.ndarray, rate: int) -> dict[str, np.ndarray]:
    """museval v4 metrics per source and window: ``{metric: [2, windows]}`` (NaN for silent windows)."""
    import museval

    sdr, isr, sir, sar = museval.evaluate(refs[..., None], est[..., None], win=rate, hop=rate)
    return {"SDR": sdr, "SIR": sir, "SAR": sar, "ISR": isr}


def perceptual(ref: np.ndarray, est: np.ndarray, rate: int) -> dict[str, float]:
    """Wideband PESQ (ITU-T P.862.2, MOS-LQO 1-4.6) and STOI (0-1) of ``est [n]`` against ``ref [n]``.

    Both work at 16 kHz (PESQ wideband) and 10 kHz (STOI resamples itself);
    another rate is resampled to 16 kHz first. NaN where PESQ finds no speech.
    """
    from pesq import PesqError, pesq
    from pystoi import stoi

    if rate != 16000:
        from vsep.audio import resample

        ref, est, rate = resample(ref, rate, 16000), resample(est, rate, 16000), 16000
    try:
        p = float(pesq(rate, ref.astype(np.float64), est.astype(np.float64), "wb"))
    except PesqError:
        p = float("nan")
    return {"PESQ": p, "STOI": float(stoi(ref, est, rate, extended=False))}


def score(ex: dict[str, Any], estimates: dict[str, np.ndarray], rate: int, names: tuple[str, str]) -> dict[str, Any]:
    """Metrics of every method on one example (only sources whose reference is not silent)."""
    refs = ex["refs"]
    valid = [float(np.sum(r**2)) > SILENT for r in refs]
    result: dict[str, Any] = {"id": ex["id"], "kind": ex["kind"], "tir_db": ex["tir_db"], "methods": {}}
    usable = all(valid)  # BSSEval needs every reference non-silent
    for method, est in estimates.items():
        per_source: dict[str, Any] = {}
        frames = bss(refs, est, rate) if usable else None
        for k, name in enumerate(names):
            if not valid[k]:
                continue
            m = {"SI-SDR": si_sdr(refs[k], est[k])}
            if k == 0:  # the target: is the clean track believable?
                m.update(perceptual(refs[k], est[k], rate))
            if frames is not None:
                for metric in METRICS:
                    vals = frames[metric][k]
                    m[metric] = float(np.nanmedian(vals)) if np.any(np.isfinite(vals)) else float("nan")
            per_source[name] = m
        result["methods"][method] = per_source
        if frames is not None:
            result.setdefault("museval", {})[method] = museval_json(frames, names)
    base = result["methods"].get("mixture", {}) if usable else {}  # no improvement over a perfect mixture
    for per_source in result["methods"].values():
        for name, m in per_source.items():
            for metric in ("SDR", "SI-SDR", "PESQ", "STOI"):
                if metric in m and metric in base.get(name, {}):
                    m[f"{metric}i"] = m[metric] - base[name][metric]
    return result


def museval_json(frames: dict[str, np.ndarray], names: tuple[str, str]) -> dict[str, Any]:
    """museval's per-track JSON layout: ``{"targets": [{"name", "frames": [{"time", "duration", "metrics"}]}]}``.

    Windows are one second long with a one-second hop.
    """
    windows = frames["SDR"].shape[1]
    return {
        "targets": [
            {
                "name": name,
                "frames": [
                    {"time": float(i), "duration": 1.0, "metrics": {m: _clean(frames[m][k][i]) for m in METRICS}}
                    for i in range(windows)
                ],
            }
            for k, name in enumerate(names)
        ]
    }


def _clean(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def condition(row: dict[str, Any]) -> list[str]:
    """Groups an example belongs to: overall, its kind, its TIR bin."""
    groups = ["all", f"kind={row['kind']}"]
    tir = row["tir_db"]
    if np.isfinite(tir) and tir > -100:
        groups.append("tir<0dB" if tir < 0 else "tir>=0dB")
    return groups


def summarise(rows: list[dict[str, Any]], names: tuple[str, str]) -> dict[str, Any]:
    """Medians and means per group, method, source and metric."""
    acc: dict = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for group in condition(row):
            for method, per_source in row["methods"].items():
                for name, metrics in per_source.items():
                    for metric, v in metrics.items():
                        if v is not None and np.isfinite(v):
                            acc[(group, method, name)][metric].append(v)
    out: dict[str, Any] = {}
    for (group, method, name), metrics in sorted(acc.items()):
        out.setdefault(group, {}).setdefault(method, {})[name] = {
            metric: {"median": float(np.median(v)), "mean": float(np.mean(v)), "n": len(v)}
            for metric, v in sorted(metrics.items())
        }
    return out


def markdown(summary: dict[str, Any], target: str) -> str:
    """The summary as Markdown tables (target source; medians, n in brackets)."""
    cols = ("SDR", "SDRi", "SI-SDR", "SI-SDRi", "SIR", "SAR", "PESQ", "PESQi", "STOI", "STOIi")
    lines = []
    for group, methods in summary.items():
        if not any(per_source.get(target, {}).get("SI-SDR", {}).get("n") for per_source in methods.values()):
            lines += [f"### {group}", "", f"(the {target} reference is silent in every example of this group)", ""]
            continue
        lines += [f"### {group}", "", "| method | " + " | ".join(cols) + " | n |", "|---" * (len(cols) + 2) + "|"]
        for method, per_source in methods.items():
            m = per_source.get(target, {})
            cells = [f"{m[c]['median']:.{3 if c.startswith('STOI') else 2}f}" if c in m else "" for c in cols]
            n = m.get("SI-SDR", {}).get("n", 0)
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {n} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------ command


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    from vsep import enroll, model_io, runtime, storage

    args.model = model_io.serving(args.model, enroll.parse_specs(args.enroll))
    scfg = config.from_namespace(config.SeparateConfig, args, model_io.separate_defaults(args.model))
    scfg.validate()
    storage.preflight(args.output_dir, args.model, args.data, args.folder, args.nmf_data)
    if not args.folder:  # damaged shards: one line before the model is built
        from vsep.manifest import read_manifest, verify_shards

        verify_shards(read_manifest(args.data), (args.split,))
    voices = enroll.read_specs(args.enroll, args.model)
    if voices and len(voices) > 1:
        raise ValueError("evaluate scores one voice: give one --enroll")
    model = model_io.load(args.model)
    cfg = model.cfg
    served = runtime.load(args.model, scfg, voices)  # the runtime vsep separate would use
    names = served.names
    separate = served.mono
    oracle = oracle_masks(model)
    nmf_data = args.nmf_data or args.data or model_io.read_config(str(args.model or model_io.BUNDLED))[2].get("data")
    nmf = None if args.no_nmf else nmf_method(model, nmf_data, args.output_dir)
    if args.folder:
        examples = examples_from_folder(args.folder, names[0], cfg.sample_rate)
    else:
        examples = examples_from_dataset(args.data, cfg.target, cfg.sample_rate, args.limit, args.split)
    out = args.output_dir
    rows, timing = [], defaultdict(float)
    audio: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    audio_s = 0.0
    for ex in tqdm(examples, desc="evaluate", unit="ex", disable=args.no_progress, file=sys.stderr):
        t0 = time.perf_counter()
        est = {"model": np.asarray(separate(ex["mixture"])), "mixture": np.stack([ex["mixture"]] * 2)}
        est.update(oracle(ex["mixture"], ex["refs"]))
        if nmf is not None:
            est["nmf"] = nmf(ex["mixture"])
        timing["separate_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        row = score(ex, est, cfg.sample_rate, names)
        timing["metrics_s"] += time.perf_counter() - t0
        audio_s += len(ex["mixture"]) / cfg.sample_rate
        rows.append(row)
        audio[ex["id"]] = (ex["mixture"], ex["refs"][0], est["model"][0])
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", ex["id"])
        storage.write_text(storage.join(out, "examples", f"{safe}.json"), json.dumps(row))
    if not rows:
        raise ValueError("no examples to evaluate")
    summary = {
        "model": str(args.model or model_io.BUNDLED),
        "split": None if args.folder else args.split,
        "separate": config.to_dict(scfg),
        "runtime": served.runtime,
        "target": names[0],
        "enrolled": bool(voices and voices[0][1] is not None),
        "sample_rate": cfg.sample_rate,
        "examples": len(rows),
        "audio_s": round(audio_s, 1),
        "skipped_for_bsseval": sum(1 for r in rows if "museval" not in r),
        "timing": {k: round(v, 2) for k, v in timing.items()},
        "groups": summarise(rows, names),
    }
    summary["timing"]["metrics_s_per_audio_minute"] = round(timing["metrics_s"] / max(audio_s / 60, 1e-9), 2)
    summary["timing"]["methods_scored"] = len(rows[0]["methods"])
    table = markdown(summary["groups"], names[0])
    storage.write_text(storage.join(out, "summary.json"), json.dumps(summary, indent=2))
    storage.write_text(storage.join(out, "summary.md"), table)
    from vsep import report

    with storage.local_folder(out) as local:  # gs://: written locally, then uploaded
        report.write(local, summary, table, showcases(model, rows, audio, names[0]), cfg.sample_rate, cfg.frame_step)
    return summary


def showcases(model, rows: list[dict[str, Any]], audio: dict, target: str) -> list[dict[str, Any]]:
    """Best, median and worst examples by the model's target SI-SDRi, with spectra and mask."""
    import tensorflow as tf

    from vsep.stft import magnitude

    scored = [(r["methods"]["model"][target]["SI-SDRi"], r["id"]) for r in rows
              if "SI-SDRi" in r["methods"].get("model", {}).get(target, {})]
    if not scored:
        return []
    scored.sort()
    picks = {"worst": scored[0], "median": scored[len(scored) // 2], "best": scored[-1]}
    out = []
    for label, (value, ex_id) in picks.items():
        mixture, reference, estimate = audio[ex_id]
        mags = {name: magnitude(model.stft(tf.constant(x[None])))[0].numpy()
                for name, x in (("mixture", mixture), ("reference", reference), ("estimate", estimate))}
        mask = np.clip(mags["estimate"] / (mags["mixture"] + 1e-8), 0.0, 1.0)  # the effective target mask
        out.append({"label": label, "id": ex_id, "si_sdri": value, "spectra": mags, "mask": mask,
                    "audio": {"mixture": mixture, "reference": reference, "estimate": estimate}})
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vsep evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model directory (default: the bundled model)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="prepared data set prefix: its --split is evaluated")
    src.add_argument("--folder", help="folder of <name>/mixture.wav with <target>.wav and rest.wav")
    p.add_argument("--output-dir", "-o", required=True, help="where the report goes")
    p.add_argument("--split", default="test", choices=("test", "val"),
                   help="split of --data (default: test; choose inference settings on val, report test)")
    p.add_argument("--limit", type=int, help="evaluate at most this many examples")
    p.add_argument("--nmf-data", help="prepared data set whose train split teaches the NMF baseline "
                   "(default: --data, else the model's training data)")
    p.add_argument("--no-nmf", action="store_true", help="skip the supervised NMF baseline")
    p.add_argument("--no-progress", action="store_true")
    enroll_option(p)
    config.add_arguments(p, config.SeparateConfig)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from vsep.model_io import ModelDirError
    from vsep.storage import StorageError

    try:
        summary = run(args)
    except (ValueError, FileNotFoundError, ModelDirError, StorageError, EnrollError) as e:
        print(f"vsep evaluate: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    target = summary["groups"]["all"].get("model", {}).get(summary["target"], {})
    print(
        f"evaluate  examples {summary['examples']}  target SI-SDRi median "
        f"{target.get('SI-SDRi', {}).get('median', float('nan')):.2f} dB  SDRi median "
        f"{target.get('SDRi', {}).get('median', float('nan')):.2f} dB  report {args.output_dir}/summary.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
