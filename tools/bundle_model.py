"""Copy a trained model into the package as the bundled default, with its model card.

    .venv/bin/python tools/bundle_model.py --model runs/bundle_model --eval runs/bundle_eval

Writes ``vsep/models/default/``: ``config.json`` (model and training config,
data set, training command), ``model.weights.h5``, ``history.jsonl`` (the
learning curve) and ``MODEL_CARD.md`` (what it is, how it was trained, its
scores on the held-out test split from ``vsep evaluate``'s summary.json) and
``splits.json`` (the source files behind each split, relative to the data root).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "vsep" / "models" / "default"
LIMIT_MB = 25


def score_table(summary: dict, target: str) -> str:
    rows = ["| condition | method | SDRi | SI-SDRi | SDR | SIR | SAR | n (BSSEval / SI-SDR) |",
            "|---|---|---|---|---|---|---|---|"]
    for group, methods in summary["groups"].items():
        for method in ("model", "mixture", "oracle_irm", "oracle_ibm", "nmf"):
            m = methods.get(method, {}).get(target)
            if not m:
                continue
            cells = " | ".join(f"{m[k]['median']:.2f}" if k in m else "" for k in ("SDRi", "SI-SDRi", "SDR", "SIR", "SAR"))
            counts = f"{m.get('SDR', {}).get('n', 0)} / {m.get('SI-SDR', {}).get('n', 0)}"
            rows.append(f"| {group} | {method} | {cells} | {counts} |")
    return "\n".join(rows)


def cross_table(summary: dict, target: str) -> str:
    """Per condition of the cross-source set: the model against the input and the oracle mask."""
    cols = ("SDRi", "SI-SDRi", "SDR", "SIR", "SAR", "PESQ", "PESQi", "STOI", "STOIi")
    rows = ["| condition | method | " + " | ".join(cols) + " | n |", "|---" * (len(cols) + 3) + "|"]
    for group, methods in summary["groups"].items():
        for method in ("model", "mixture", "oracle_irm"):
            m = methods.get(method, {}).get(target)
            if not m:
                continue
            cells = " | ".join(f"{m[k]['median']:.{3 if k.startswith('STOI') else 2}f}" if k in m else ""
                               for k in cols)
            rows.append(f"| {group.replace('kind=', '')} | {method} | {cells} | {m.get('SDR', {}).get('n', 0)} |")
    return "\n".join(rows)


def settings(summary: dict) -> str:
    """How the scored separation ran (``vsep evaluate``'s ``separate`` settings), as a sentence."""
    sep = summary.get("separate")
    if not sep:
        return ""
    masks = "ratio-normalised (Wiener-style)" if sep["wiener"] else "plain"
    passes = "one pass" if sep["shifts"] == 1 else f"{sep['shifts']} shift-averaged passes"
    floor = f", target mask floor {sep['target_floor']}" if sep.get("target_floor") else ""
    precision = f", U-Net in {sep['precision']}" if sep.get("precision") else ""
    return (f" Separated with {passes} and {masks} masks{floor}{precision} (`--shifts`, `--wiener`, "
            "`--target-floor`, `--precision`).")


def curve(history: list[dict]) -> str:
    rows = ["| epoch | step | train loss | val loss | val SI-SDR | val SI-SDRi | val SNRi |", "|---|---|---|---|---|---|---|"]
    for h in history:
        rows.append(f"| {h['epoch']} | {h['step']} | {h.get('loss', '')} | {h.get('val_loss', '')} | "
                    f"{h.get('val_si_sdr', '')} | {h.get('val_si_sdri', '')} | {h.get('val_snri', '')} |")
    return "\n".join(rows)


def held_out_sources(data: str) -> dict[str, dict[str, list[str]]]:
    """Per split, the source files (relative to the data root, e.g. ``speakers/trump/x.mp3``) behind it.

    From the data set's manifest (recording ids per split) and its lake's index
    (recording id -> source URI), so tests and users can rebuild mixtures from
    recordings the bundled model never saw.
    """
    from vsep import lake, storage

    manifest = json.loads(storage.read_text(storage.join(data, "manifest.json")))
    sources = {e.recording_id: e.source_uri for e in lake.read_index(manifest["lake"])}

    def relative(uri: str) -> str:  # from the last speakers/, noise/ or rir/ folder on
        parts = uri.replace("\\", "/").split("/")
        anchors = [i for i, p in enumerate(parts) if p in ("speakers", "noise", "rir")]
        return "/".join(parts[anchors[-1]:]) if anchors else uri

    out: dict[str, dict[str, list[str]]] = {}
    for split, roles in manifest["splits"].items():
        out[split] = {role: sorted({relative(sources[r]) for r in ids if r in sources})
                      for role, ids in roles.items() if role.endswith("_recordings")}
        out[split]["other_speakers"] = roles.get("other_speakers", [])
    return out


def best_epoch(history: list[dict]) -> int:
    return min(history, key=lambda h: h.get("val_loss", 0.0))["epoch"] if history else 0


def init_note(doc: dict) -> str:
    cmd = doc.get("command", [])
    if "--init-from" not in cmd:
        return ""
    return f" Fine-tuned from the previously bundled model (`--init-from {cmd[cmd.index('--init-from') + 1]}`)."


def holdout_note(doc: dict) -> str:
    from vsep import storage

    try:
        cfg = json.loads(storage.read_text(storage.join(doc["data"], "manifest.json")))["config"]
    except (OSError, ValueError, KeyError, storage.StorageError):
        return ""
    parts = [f"{split}: {', '.join(f'`{p}`' for p in cfg.get(f'{split}_holdout') or [])}"
             for split in ("val", "test") if cfg.get(f"{split}_holdout")]
    return ("\n- Held out whole (never in training): " + "; ".join(parts)) if parts else ""


def split_section(summary: dict | None, target: str) -> str:
    if not summary:
        return ""
    return f"""## Scores on the held-out test split

{summary['examples']} test mixtures ({summary['audio_s']} s) from recordings and speakers the model never saw in
training. Medians, target source, dB. `mixture` is the unprocessed input; `oracle_*` are ideal masks at the
model's STFT (the ceiling of masking). BSSEval metrics (SDR, SIR, SAR and SDRi) need both sources present;
SI-SDR also counts the target-only mixtures.{settings(summary)}

{score_table(summary, target)}
"""


def cross_section(cross: str | None, target: str) -> str:
    if not cross:
        return ""
    summary = json.loads((Path(cross) / "summary.json").read_text())
    return f"""## Headline: the cross-source test set

{summary['examples']} mixtures of 8 s (`vsep crosstest`, TIR -5/0/+5 dB) built only from recordings held out
whole from training and validation (`recipes/prepare_cross_source.json`): target sources, a corpus of voices, noise
types and rooms that training never heard; `soundalike` is another held-out target recording with its voice
shifted 8-15 %. Run once for this model. Medians, target source; SDR family in dB, PESQ wideband MOS, STOI 0-1.
{settings(summary)}

{cross_table(summary, target)}

"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--eval", help="vsep evaluate output dir (test split of the prepared set), optional")
    p.add_argument("--cross", help="vsep evaluate output dir of the cross-source test set (vsep crosstest)")
    p.add_argument("--notes", default="", help="extra text for the card")
    p.add_argument("--card-only", action="store_true", help="rewrite MODEL_CARD.md only (weights already bundled)")
    p.add_argument("--calibration", nargs="+", help="recordings for the 8-bit graph (model.int8.onnx, bundled "
                   "instead of model.onnx: within the size limit, faster, same scores)")
    args = p.parse_args()
    model, ev = Path(args.model), Path(args.eval or ".")
    doc = json.loads((model / "config.json").read_text())
    summary = json.loads((ev / "summary.json").read_text()) if args.eval else None
    history = [json.loads(x) for x in (model / "history.jsonl").read_text().splitlines() if x.strip()]
    DEST.mkdir(parents=True, exist_ok=True)
    # training saves the optimizer's moments with the weights; the bundle keeps the model's alone
    from vsep import model_io

    weights = DEST / "model.weights.h5"
    if not args.card_only:
        from vsep import onnx_int8, onnx_model

        loaded = model_io.load(str(model))
        loaded.save_weights(str(weights))
        onnx_model.write(loaded, DEST)  # vsep separate serves it with onnxruntime (fast start)
        if args.calibration:  # the 8-bit graph only: the float one is `vsep export --onnx` away
            onnx_int8.write(str(DEST), args.calibration)
            (DEST / onnx_model.ONNX).unlink()
    graph = next(p for p in (DEST / "model.int8.onnx", DEST / "model.onnx") if p.exists())
    size_mb = (weights.stat().st_size + graph.stat().st_size) / 1e6
    if size_mb > LIMIT_MB:
        weights.unlink()
        print(f"bundle_model: weights and graph are {size_mb:.1f} MB, over the {LIMIT_MB} MB limit", file=sys.stderr)
        return 2
    (DEST / "config.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
    splits = held_out_sources(doc["data"])
    (DEST / "splits.json").write_text(json.dumps(splits, indent=1, sort_keys=True))
    previous = DEST / "history.jsonl"
    if previous.exists() and not args.card_only:  # the bundled model's own curve stays, under its stage name
        stage = 1 + max([int(p.stem.rsplit("stage", 1)[1]) for p in DEST.glob("history_stage*.jsonl")] or [3])
        shutil.copy(previous, DEST / f"history_stage{stage}.jsonl")
    shutil.copy(model / "history.jsonl", DEST / "history.jsonl")
    target, mcfg, tcfg = doc["model"]["target"], doc["model"], doc["train"]
    card = f"""# Bundled model: {target} versus everything else

What: a U-Net soft-mask separator (vsep {doc.get('vsep_version')}) that splits a recording into
`{target}.wav` (the target speaker) and `rest.wav` (other speakers, crowd, noise).

- STFT: {mcfg['sample_rate']} Hz, window {mcfg['frame_length']}, hop {mcfg['frame_step']}, FFT {mcfg['fft_length']}
- U-Net: depth {mcfg['depth']}, base filters {mcfg['filters']}, kernel {mcfg['kernel_size']}, dropout {mcfg['dropout']};
  weights {weights.stat().st_size / 1e6:.1f} MB, and the same model as an ONNX graph (`{graph.name}`, what
  `vsep separate` runs with onnxruntime{", convolutions in 8 bits" if "int8" in graph.name else ""})
  {graph.stat().st_size / 1e6:.1f} MB
- Loss: {tcfg['loss']}; batch {tcfg['batch_size']}, learning rate {tcfg['learning_rate']},
  remix probability {tcfg['remix_prob']}, TIR {tcfg['tir_db']} dB, gain {tcfg['gain_db']} dB; random channels
  {tcfg.get('eq_prob', 0.0)}, interference voice shifts {tcfg.get('other_shift_prob', 0.0)}, impostors
  {tcfg.get('impostor_prob', 0.0)} (probabilities)
- Trained for {history[-1]['epoch'] if history else 0} epochs of {tcfg['steps_per_epoch']} steps on CPU (2 cores);
  the weights are those of the best validation epoch ({best_epoch(history)}).{init_note(doc)}
- Data: `{doc.get('data')}`, prepared from `../shared/data` with `vsep prepare` (target speech split by recording,
  other speakers by speaker, noise by recording; mixtures with other speakers, noise/babble, both, target only,
  other only).{holdout_note(doc)}
- Training command: `{' '.join(doc.get('command', []))}`

{cross_section(args.cross, target)}{split_section(summary, target)}
## Learning curve (validation split, per epoch)

{curve(history)}

## Limits

{args.notes}
"""
    (DEST / "MODEL_CARD.md").write_text(card)
    print(f"bundled {weights} ({size_mb:.1f} MB) -> {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
