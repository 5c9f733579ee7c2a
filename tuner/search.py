"""``vsep tune``: search the STFT, U-Net architecture, loss and learning rate with keras-tuner.

    vsep tune --data runs/data --results runs/tune [--tuner hyperband|random|bayesian] \\
              [--frame-lengths 512 1024] [--overlaps 0.75 0.5] [--depths 4 5 6] [--epochs 9 ...]

Search space (:mod:`tuner.space`): STFT window ``--frame-lengths`` (``fft_length
= frame_length``) and ``--overlaps`` (``frame_step = frame_length * (1 -
overlap)``: 0.75 is a quarter, 0.5 half the window), U-Net ``--depths``,
``--base-filters``, ``--kernel-sizes``, ``--dropouts``, ``--losses`` and a
log-uniform ``--learning-rate-range``. One value fixes a parameter. Only
combinations that pass ``ModelConfig.validate()`` and that the U-Net can be
built from (``fft_length // 2`` divisible by ``2**depth``, a patch of at least
``2**depth`` frames) can be drawn: the depth is a keras-tuner conditional
hyperparameter of the STFT. A space narrowed to nothing is an error (exit 2).
Every trial trains on patches of ``--patch-s`` seconds whatever its STFT.
The other ``vsep train`` options (``--batch-size``, ``--steps-per-epoch``,
``--validation-steps``, augmentation, ``--seed``...) are fixed for all trials;
``--epochs`` is the epochs of a trial (Hyperband: the most a trial trains),
``--patience`` stops a trial early.

Objective: ``val_si_sdri`` by default, the mean SI-SDR improvement of the
target estimate over the unprocessed mixture on the validation split (dB,
maximised; from ``SeparationModel.test_step``); a trial scores its best epoch.
``--objective val_loss`` (minimised) is the alternative; it is not
comparable between trials with different ``--losses``.

Tuners: ``hyperband`` (default), ``random``, ``bayesian`` (``--max-trials``).

Results (``--results``, local or ``gs://``), all in ``<results>/<project_name>/``:
keras-tuner's own files (``oracle.json``, ``trial_*/``; a re-run resumes the
search, ``--overwrite`` starts over) plus ``best_config.json`` (``vsep train
--config`` reads it), ``trials.json`` / ``trials.md`` and
``search_space.json``. With ``gs://`` results, keras-tuner works in a local
folder (``--work-dir``, default a temporary one) that is copied up after each
trial and at the end with :mod:`vsep.storage`, and copied down at the start
to resume.

Distributed tuning, as keras-tuner documents it: start one chief and any
number of workers with the same command line and

    KERASTUNER_TUNER_ID=chief   KERASTUNER_ORACLE_IP=10.0.0.2 KERASTUNER_ORACLE_PORT=8000  (the chief)
    KERASTUNER_TUNER_ID=tuner1  KERASTUNER_ORACLE_IP=10.0.0.2 KERASTUNER_ORACLE_PORT=8000  (each worker)

The chief runs the oracle (a gRPC server on that address) and no trials; the
workers ask it for trials and report their metrics back. The chief writes the
reports when every worker is done. Workers never delete (``--overwrite`` only
acts on the chief). Hyperband continues trials from their checkpoints, so its
workers need the same results folder (a shared disk, or ``gs://``, from which
a worker fetches a trial's checkpoint when it continues it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from tuner import report
from tuner.space import (
    OBJECTIVES,
    EmptySpaceError,
    ResolvedSpace,
    SearchSpace,
    TuneConfig,
    add_arguments,
    check_not_given,
    from_namespace,
    hide_tuned,
    model_config,
)
from vsep import config, storage
from vsep.config import ModelConfig, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    """The ``vsep tune`` options: paths, the search space, the tuner and the fixed model/train options."""
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        prog="vsep tune",
        description=doc.split("\n\n")[0].replace("``", "'"),
        epilog="\n\n".join(doc.split("\n\n")[2:]).replace("``", "'").replace(":mod:", "").replace("\\\n", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="prepared data set prefix (manifest.json): train and val splits")
    p.add_argument("--results", required=True, help="results folder, local or gs:// (keras-tuner's directory)")
    p.add_argument("--work-dir", help="local folder keras-tuner works in when --results is gs:// (default: a temp dir)")
    p.add_argument("--overwrite", action="store_true", help="start the search over instead of resuming it")
    p.add_argument("--show-space", action="store_true", help="print the resolved search space as JSON and exit")
    p.add_argument("--quiet", action="store_true", help="no per-epoch output")
    add_arguments(p, SearchSpace)
    add_arguments(p, TuneConfig)
    config.add_arguments(p, ModelConfig)
    config.add_arguments(p, TrainConfig)
    hide_tuned(p)
    return p


def role() -> str:
    """``"chief"``, ``"worker"`` or ``"standalone"``, from keras-tuner's environment variables.

    The same rule keras-tuner applies: distributed when ``KERASTUNER_ORACLE_IP``
    is set, chief when ``KERASTUNER_TUNER_ID`` contains ``chief``.
    """
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "standalone"
    for name in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        if name not in os.environ:
            raise ValueError(f"KERASTUNER_ORACLE_IP is set but {name} is not")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


@dataclasses.dataclass
class Plan:
    """Everything a search needs, resolved from the command line (no TensorFlow yet)."""

    resolved: ResolvedSpace
    tune: TuneConfig
    data: str
    results: str
    project_uri: str
    work_dir: str
    role: str
    tuner_id: str
    overwrite: bool
    verbose: int

    @property
    def remote(self) -> bool:
        return "://" in self.results

    @property
    def local_project(self) -> str:
        return os.path.join(self.work_dir, self.tune.project_name)


def resolve(args: argparse.Namespace) -> Plan:
    """Configs and paths from the command line; one-line ``ValueError`` when they cannot work."""
    check_not_given(args)
    space = from_namespace(SearchSpace, args)
    tune = from_namespace(TuneConfig, args)
    tune.validate()
    base_model = config.from_namespace(ModelConfig, args)
    base_train = config.from_namespace(TrainConfig, args)
    resolved = ResolvedSpace(space, base_model, base_train)
    results = args.results.rstrip("/") if "://" in args.results else args.results
    if "://" in results and not results.startswith("gs://"):
        raise ValueError(f"--results {results}: only local folders and gs:// are supported")
    work = args.work_dir or (tempfile.mkdtemp(prefix="vsep-tune-") if "://" in results else results)
    r = role()
    return Plan(
        resolved=resolved, tune=tune, data=args.data, results=results,
        project_uri=storage.join(results, tune.project_name), work_dir=work, role=r,
        tuner_id=os.environ.get("KERASTUNER_TUNER_ID", "tuner0"), overwrite=args.overwrite and r != "worker",
        verbose=0 if args.quiet else (1 if sys.stdout.isatty() else 2),
    )


def data_files(plan: Plan) -> tuple[list[str], list[str]]:
    """Train and val shards; a clear error when the data cannot feed every model of the space."""
    from vsep.manifest import check_compatible, read_manifest

    manifest = read_manifest(plan.data)
    base = plan.resolved.base_model
    if manifest["config"].get("target") != base.target:
        raise ValueError(f"data set target {manifest['config'].get('target')!r} differs from model target "
                         f"{base.target!r} (--target)")
    longest = max((model_config(base, s, s.depths[0], base.filters, base.kernel_size, base.dropout)
                   for s in plan.resolved.stfts), key=lambda c: c.patch_samples())
    return check_compatible(manifest, longest, "train"), check_compatible(manifest, longest, "val")


def run_records(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """Run records (``trial_*/run-*.json``) by trial id, from the local project and its remote mirror."""
    from tuner.tuners import RUN_RECORD_PREFIX

    found: dict[tuple[str, str], dict[str, Any]] = {}
    uris = _listing(plan.project_uri) if plan.remote else []
    if os.path.isdir(plan.local_project):
        uris += storage.list_files(plan.local_project)
    for uri in uris:
        name = uri.replace("\\", "/").rsplit("/", 1)[-1]
        if name.startswith(RUN_RECORD_PREFIX) and name.endswith(".json"):
            try:
                rec = json.loads(storage.read_text(uri))
            except (ValueError, storage.StorageError):
                continue
            found[(rec["trial_id"], rec["tuner_id"])] = rec
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in found.values():
        out.setdefault(rec["trial_id"], []).append(rec)
    return out


def _listing(uri: str) -> list[str]:
    """Files below a remote prefix; none when it does not exist."""
    try:
        return storage.list_files(uri)
    except Exception:  # noqa: BLE001 - Beam reports a missing prefix variously
        return []


def _hp_config(resolved: ResolvedSpace) -> dict[str, Any]:
    import keras_tuner as kt

    hp = kt.HyperParameters()
    resolved.declare(hp)
    return hp.get_config()


def make_tuner(plan: Plan, train_files: list[str], val_files: list[str]) -> Any:
    """The keras-tuner tuner of the plan, with vsep's hypermodel and project sync."""
    import keras_tuner as kt

    from tuner.hypermodel import VsepHyperModel
    from tuner.tuners import TUNER_CLASSES, ProjectSync

    tune, train = plan.tune, plan.resolved.base_train
    kwargs: dict[str, Any] = {}
    if tune.tuner == "hyperband":
        kwargs.update(max_epochs=train.epochs, factor=tune.hyperband_factor,
                      hyperband_iterations=tune.hyperband_iterations)
    else:
        kwargs.update(max_trials=tune.max_trials)
    tuner = TUNER_CLASSES[tune.tuner](
        hypermodel=VsepHyperModel(plan.resolved, train_files, val_files),
        objective=kt.Objective(tune.objective, direction=OBJECTIVES[tune.objective]),
        seed=train.seed,
        directory=plan.work_dir,
        project_name=tune.project_name,
        overwrite=plan.overwrite,
        **kwargs,
    )
    tuner.sync = ProjectSync(plan.local_project, plan.project_uri if plan.remote else None)
    return tuner


def write_reports(plan: Plan, tuner: Any) -> dict[str, Any]:
    """Trials table (JSON, Markdown) and the best trial's config; returns the best row (or {})."""
    states = [t.get_state() for t in tuner.oracle.trials.values()]
    rows = report.trial_rows(states, plan.resolved, plan.tune.objective, run_records(plan))
    join = storage.join
    storage.write_text(join(plan.project_uri, report.TRIALS_JSON), report.dumps(
        {"objective": plan.tune.objective, "direction": OBJECTIVES[plan.tune.objective],
         "tuner": plan.tune.tuner, "data": plan.data, "trials": rows}))
    notes = [f"Objective: `{plan.tune.objective}` ({OBJECTIVES[plan.tune.objective]}imise), "
             f"tuner `{plan.tune.tuner}`, data `{plan.data}`. Metrics are those of each trial's best epoch.",
             "", f"{sum(r['status'] == 'COMPLETED' for r in rows)} of {len(rows)} trials completed."]
    storage.write_text(join(plan.project_uri, report.TRIALS_MD), report.markdown(rows, "vsep tune: trials", notes))
    best = next((r for r in rows if r["status"] == "COMPLETED" and r["score"] is not None), None)
    if best is None:
        return {}
    doc = report.best_document(best, plan.resolved, plan.tune.objective, plan.data, plan.results)
    storage.write_text(join(plan.project_uri, report.BEST), report.dumps(doc))
    return best


def tune(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume, or serve as chief, or work for) a search; returns a summary."""
    storage.preflight(args.results, args.data)
    plan = resolve(args)
    if args.show_space:
        print(report.dumps(report.frozen_space(plan.resolved, plan.tune, _hp_config(plan.resolved))), end="")
        return {"shown": True}
    train_files, val_files = data_files(plan)

    from tuner.tuners import ProjectSync

    space_uri = storage.join(plan.project_uri, report.SPACE)
    frozen = report.frozen_space(plan.resolved, plan.tune, _hp_config(plan.resolved))
    if plan.role != "worker":
        if plan.overwrite and plan.remote:
            storage.delete(_listing(plan.project_uri))
        elif not plan.overwrite and storage.exists(space_uri):
            diff = report.same_search(json.loads(storage.read_text(space_uri)), frozen)
            if diff:
                raise ValueError(f"{plan.project_uri} holds a search over another space ({', '.join(diff)} differ): "
                                 "use --overwrite or another --project-name")
    if plan.remote and not plan.overwrite:
        got = ProjectSync(plan.local_project, plan.project_uri).download()
        if got:
            print(f"vsep tune: resuming from {got} files of {plan.project_uri}")

    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tuner = make_tuner(plan, train_files, val_files)
    if plan.role != "worker":
        storage.write_text(space_uri, report.dumps(frozen))
    n_stft = len(plan.resolved.stfts)
    print(f"vsep tune: {plan.role} {plan.tuner_id}: {plan.tune.tuner} search over {n_stft} STFT settings, "
          f"{plan.resolved.size()} discrete combinations; objective {plan.tune.objective} "
          f"({OBJECTIVES[plan.tune.objective]}); project {plan.project_uri}")
    train = plan.resolved.base_train
    stop = keras.callbacks.EarlyStopping(monitor=plan.tune.objective, mode=OBJECTIVES[plan.tune.objective],
                                         patience=train.patience)
    tuner.search(epochs=train.epochs, callbacks=[stop], verbose=plan.verbose)
    if plan.role != "worker":
        # keras-tuner saves the oracle before it forgets the last trial as ongoing: save the final state
        tuner.oracle.save()
    tuner.sync.upload()

    if plan.role == "worker":
        mine = sorted(t for t, recs in run_records(plan).items() if any(r["tuner_id"] == plan.tuner_id for r in recs))
        print(f"vsep tune: worker {plan.tuner_id} ran trials {' '.join(mine) or '(none)'}")
        return {"role": "worker", "trials": mine}

    best = write_reports(plan, tuner)
    if not best:
        raise RuntimeError(f"no trial completed; see {storage.join(plan.project_uri, report.TRIALS_MD)}")
    print(f"vsep tune: best trial {best['trial_id']}: {plan.tune.objective} = {best['score']:.3f} "
          f"({best['frame_length']}/{best['frame_step']}, depth {best['depth']}, filters {best['filters']}, "
          f"kernel {best['kernel_size']}, dropout {best['dropout']}, {best['loss']}, lr {best['learning_rate']:.2e})")
    print(f"vsep tune: train it with: vsep train --config {storage.join(plan.project_uri, report.BEST)} "
          f"--data {plan.data} --model-dir MODEL_DIR")
    return {"role": plan.role, "best": best, "trials": len(tuner.oracle.trials)}


def main(argv: Sequence[str] | None = None) -> int:
    """``vsep tune`` entry point: 0 done, 2 bad input (one line on stderr), 1 the search failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        tune(args)
    except (EmptySpaceError, ValueError, FileNotFoundError, storage.StorageError) as e:
        print(f"vsep tune: error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # keras-tuner: too many failed trials; or no trial completed
        print(f"vsep tune: search failed: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
