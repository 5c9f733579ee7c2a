"""Copy a trained speaker-conditioned model into the package as the bundled enrollment model.

    .venv/bin/python tools/bundle_enroll.py --model runs/c5 --bench "test, unseen voices=runs/bench/c5_test.json"

Writes ``vsep/models/enroll/`` (:data:`vsep.model_io.BUNDLED_ENROLL`), which ``vsep separate --enroll NAME=CLIP``,
``vsep evaluate`` and ``vsep.Separator(enroll=...)`` serve when no ``--model`` is given:
``config.json``, ``model.weights.h5`` (the model's weights, without the optimizer's moments),
``model.onnx`` and ``ge2e.npz`` (what ``vsep separate`` runs with onnxruntime, without TensorFlow),
``embeddings.json`` (its stored voices), ``separate.json`` (its inference defaults), ``history.jsonl`` and
``MODEL_CARD.md`` (how it was trained, its ``benchmarks/bench_enroll.py`` scores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = 40  # weights, graph and speaker encoder together


def bench_table(benches: list[str]) -> str:
    """``["label=bench.json", ...]`` -> a markdown table of their summaries (medians)."""
    rows = ["| set | enrollment | mixtures (clips refused) | SDRi | SI-SDRi | STOI | timeline P / R | other voice alone |",
            "|---|---|---|---|---|---|---|---|"]
    for spec in benches:
        label, _, path = spec.rpartition("=")
        for seconds, s in json.loads(Path(path).read_text())["summary"].items():
            rows.append(f"| {label} | {float(seconds):g} s | {s['examples']} ({s['refused']}) | {s['SDRi']} | "
                        f"{s['SI-SDRi']} | {s['STOI']} | {s['timeline_precision']} / {s['timeline_recall']} | "
                        f"{s['absent_leak_db']} dB |")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--bench", action="append", default=[], metavar="LABEL=JSON",
                   help="a bench_enroll.py --out file to quote on the card (repeatable)")
    p.add_argument("--notes", default="", help="more text for the card (markdown)")
    p.add_argument("--recipe", default="", help="the recipe that trained it (e.g. recipes/train_c7.sh)")
    args = p.parse_args()
    from vsep import model_io, onnx_model

    model, dest = Path(args.model), model_io.BUNDLED_ENROLL
    doc = json.loads((model / model_io.CONFIG).read_text())
    if not doc["model"].get("embed_dim"):
        print(f"bundle_enroll: {model} is not speaker-conditioned (embed_dim 0)", file=sys.stderr)
        return 2
    dest.mkdir(parents=True, exist_ok=True)
    loaded = model_io.load(str(model))
    loaded.save_weights(str(dest / model_io.WEIGHTS))  # training saved the optimizer's moments too
    onnx_model.write(loaded, dest)  # model.onnx and, for a GE2E model, ge2e.npz
    for name in (model_io.CONFIG, model_io.EMBEDDINGS, model_io.SEPARATE, "history.jsonl"):
        shutil.copy(model / name, dest / name)
    size_mb = sum(f.stat().st_size for f in dest.iterdir()) / 1e6
    if size_mb > LIMIT_MB:
        shutil.rmtree(dest)
        print(f"bundle_enroll: {size_mb:.1f} MB, over the {LIMIT_MB} MB limit", file=sys.stderr)
        return 2
    history = [json.loads(x) for x in (model / "history.jsonl").read_text().splitlines() if x.strip()]
    best = min(history, key=lambda h: h["val_loss"]) if history else {}
    mcfg, tcfg = doc["model"], doc["train"]
    levels = mcfg.get("time_rnn_levels", 1) - 1
    rnn = (f", and a residual bidirectional GRU ({mcfg['time_rnn']} units each way) along time at the bottleneck"
           + (" and on the first decoder level" if levels == 1 else f" and on the first {levels} decoder levels"
              if levels else "")
           if mcfg.get("time_rnn") else "")
    shifts = (f", and every training voice shifted by {', '.join(f'{x:+g}' for x in tcfg['voice_shifts'])} % in "
              "pitch and formants as voices of their own" if tcfg.get("voice_shifts") else "")
    card = f"""# Bundled enrollment model: anybody from a clip of them alone

What: the U-Net soft-mask separator of the bundled one-target model (depth {mcfg['depth']}, {mcfg['filters']} base
filters, the same STFT: {mcfg['sample_rate']} Hz, window {mcfg['frame_length']}, hop {mcfg['frame_step']}),
every encoder layer{' and every decoder layer but the last' if mcfg.get('film_decoder') else ''} modulated per channel (FiLM) by a {mcfg['embed_dim']}-dimensional speaker embedding from a
frozen pretrained GE2E encoder (`{mcfg.get('speaker_encoder', 'ge2e')}`){rnn}. `vsep separate --enroll NAME=CLIP` serves it
(two or more voices: debate mode); no clip is needed for its stored voices
({', '.join(sorted(json.loads((model / model_io.EMBEDDINGS).read_text())))}). Files: weights
{(dest / model_io.WEIGHTS).stat().st_size / 1e6:.1f} MB, `model.onnx` {(dest / onnx_model.ONNX).stat().st_size / 1e6:.1f} MB
and `ge2e.npz` (what `vsep separate` runs with onnxruntime, without TensorFlow).

Trained by `{' '.join(doc.get('command', []))}`{f" (`{args.recipe}`)" if args.recipe else ""}, on `{doc.get('data')}`
(`vsep bank`, every speaker of the training split a target{shifts}; val and test voices, Biden and whole
corpora held out), for
{history[-1]['epoch'] if history else 0} epochs of {tcfg['steps_per_epoch']} steps of {tcfg['batch_size']} on two CPU
cores; the weights are the best validation epoch's ({best.get('epoch')}, val loss {best.get('val_loss')},
SNRi {best.get('val_snri')} dB on its own validation mix). Inference defaults (`separate.json`):
{json.dumps({k: v for k, v in json.loads((model / model_io.SEPARATE).read_text()).items() if k not in ('config', 'version')})}.

## Scores (`benchmarks/bench_enroll.py`: 8 s mixtures of a held-out voice and a voice of another corpus, TIR
-5/0/+5 dB, enrollment from other recordings of the voice; medians)

{bench_table(args.bench)}

{args.notes}
"""
    (dest / "MODEL_CARD.md").write_text(card)
    print(f"{dest}  {size_mb:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
