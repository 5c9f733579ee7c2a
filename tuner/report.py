"""What a search leaves besides keras-tuner's own files: trials table, best config, frozen space.

Works on keras-tuner trial *states* (``Trial.get_state()``, the content of
``trial_*/trial.json``): plain JSON, no TensorFlow. Everything is written as
JSON or Markdown through :mod:`vsep.storage` (local or ``gs://``); nothing is
pickled.

Files, in the project folder ``<results>/<project_name>/``:

``best_config.json``
    ``{"model": ModelConfig, "train": TrainConfig, "tune": {...}}`` of the
    best completed trial: what ``vsep train --config`` reads (it uses the
    ``model`` and ``train`` sections). The ``train`` section is the search's
    base config with the tuned loss and learning rate, so ``epochs`` and
    ``steps_per_epoch`` are the search's; override them for the final run.
``trials.json`` / ``trials.md``
    one row per trial, best first: status, score, the resolved parameters
    (frame length, frame step, depth, ...), the metrics at the trial's best
    epoch, who ran it and how long it took.
``search_space.json``
    the frozen search: the space, the tuner settings, the base configs, the
    valid STFT/depth combinations and keras-tuner's hyperparameter config.
"""

from __future__ import annotations

import json
import math
from typing import Any

from tuner.space import OBJECTIVES, ResolvedSpace
from vsep import config

FORMAT = "vsep-tune"
FORMAT_VERSION = 1
BEST = "best_config.json"
TRIALS_JSON = "trials.json"
TRIALS_MD = "trials.md"
SPACE = "search_space.json"
# table column -> keras metric name (the training loss value is "train_loss": "loss" is the loss function)
METRICS = {"val_si_sdri": "val_si_sdri", "val_snri": "val_snri", "val_si_sdr": "val_si_sdr", "val_loss": "val_loss",
           "train_loss": "loss"}
PARAMS = ("frame_length", "frame_step", "depth", "filters", "kernel_size", "dropout", "loss", "learning_rate")


def _value(v: Any) -> float | None:
    if isinstance(v, list):  # older keras-tuner stored a list per observation
        v = sum(v) / len(v) if v else None
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def metric_at(state: dict[str, Any], name: str, step: int | None) -> float | None:
    """Value of metric ``name`` at ``step`` (the trial's best epoch), else its last value."""
    hist = state.get("metrics", {}).get("metrics", {}).get(name)
    if not hist or not hist.get("observations"):
        return None
    obs = hist["observations"]
    at = [o for o in obs if o.get("step") == step]
    return _value((at or obs)[-1]["value"])


def trial_rows(states: list[dict[str, Any]], resolved: ResolvedSpace, objective: str,
               runs: dict[str, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """One row per trial, best score first (per the objective's direction), unscored trials last."""
    runs = runs or {}
    rows = []
    for st in states:
        values = dict(st["hyperparameters"]["values"])
        row: dict[str, Any] = {"trial_id": st["trial_id"], "status": st.get("status"), "score": _value(st.get("score")),
                               "best_step": st.get("best_step")}
        try:
            mcfg, tcfg = resolved.configs(values)
            params = {**{k: getattr(mcfg, k) for k in PARAMS[:6]}, "loss": tcfg.loss,
                      "learning_rate": tcfg.learning_rate}
        except (KeyError, ValueError):  # a trial that never got values
            params = dict.fromkeys(PARAMS)
        row.update(params)
        row.update({col: metric_at(st, name, st.get("best_step")) for col, name in METRICS.items()})
        hist = st.get("metrics", {}).get("metrics", {}).get(objective, {})
        row["epochs"] = values.get("tuner/epochs", len(hist.get("observations", [])))
        recs = runs.get(st["trial_id"], [])
        row["ran_by"] = sorted({r["tuner_id"] for r in recs})
        row["seconds"] = round(sum(r.get("seconds", 0.0) for r in recs), 1) if recs else None
        row["hyperparameters"] = values
        if st.get("message"):
            row["message"] = str(st["message"]).strip().splitlines()[-1][:300]
        rows.append(row)
    sign = 1.0 if OBJECTIVES[objective] == "max" else -1.0
    rows.sort(key=lambda r: (r["score"] is None, -sign * (r["score"] or 0.0), r["trial_id"]))
    return rows


def best_document(row: dict[str, Any], resolved: ResolvedSpace, objective: str, data: str,
                  results: str) -> dict[str, Any]:
    """The ``vsep train --config`` document of one trial row."""
    mcfg, tcfg = resolved.configs(row["hyperparameters"])
    mcfg.validate()
    return {
        "model": config.to_dict(mcfg),
        "train": config.to_dict(tcfg),
        "tune": {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "trial_id": row["trial_id"],
            "objective": objective,
            "direction": OBJECTIVES[objective],
            "score": row["score"],
            "best_step": row["best_step"],
            "metrics": {m: row[m] for m in METRICS},
            "hyperparameters": row["hyperparameters"],
            "data": data,
            "results": results,
        },
    }


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 else f"{v:.3f}"
    if isinstance(v, list):
        return " ".join(str(x) for x in v)
    return str(v).replace("|", "\\|")


def markdown(rows: list[dict[str, Any]], title: str, notes: list[str]) -> str:
    """A Markdown table of the trials (best first)."""
    cols = ["trial_id", "status", "score", *PARAMS, "epochs", *METRICS, "ran_by", "seconds"]
    lines = [f"# {title}", "", *notes, ""]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    failed = [r for r in rows if r.get("message")]
    if failed:
        lines += ["", "Messages:", ""]
        lines += [f"- trial {r['trial_id']} ({r['status']}): {r['message']}" for r in failed]
    return "\n".join(lines) + "\n"


def frozen_space(resolved: ResolvedSpace, tune: Any, hp_config: dict[str, Any] | None) -> dict[str, Any]:
    """The frozen search, as written to ``search_space.json``."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "space": config.to_dict(resolved.space),
        "tune": config.to_dict(tune),
        "objective": {"name": tune.objective, "direction": OBJECTIVES[tune.objective]},
        "model": config.to_dict(resolved.base_model),
        "train": config.to_dict(resolved.base_train),
        "combinations": resolved.combinations(),
        "discrete_size": resolved.size(),
        "hyperparameters": hp_config,
    }


def same_search(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Sections in which two frozen searches differ (empty: the same search, resumable)."""
    old, new = json.loads(dumps(old)), json.loads(dumps(new))  # tuples vs lists: compare as JSON
    keys = ("space", "model", "train", "objective")
    diff = [k for k in keys if old.get(k) != new.get(k)]
    if old.get("tune", {}).get("tuner") != new.get("tune", {}).get("tuner"):
        diff.append("tuner")
    return diff


def dumps(obj: Any) -> str:
    """JSON text, sorted keys, NaN written as null."""
    return json.dumps(_no_nan(obj), indent=2, sort_keys=True) + "\n"


def _no_nan(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj
