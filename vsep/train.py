"""``vsep train``: train a separation model from prepared TFRecords, resumably.

    vsep train --data runs/data --model-dir runs/model [--config cfg.json] [--epochs 30 ...]

The resolved config is written as ``config.json`` in the model directory
before training starts. After every epoch the full training state (weights,
optimizer, epoch, best validation loss, early-stopping counter) is saved under
``checkpoints/``; running the same command again after a kill resumes from
the last completed epoch. The best epoch's weights are ``model.weights.h5``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from vsep import config, distribute, model_io, storage
from vsep.config import ModelConfig, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vsep train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="prepared data set prefix (manifest.json); default: the one in the model's config")
    p.add_argument("--model-dir", required=True, help="where the model, checkpoints and logs go")
    p.add_argument("--config", help="JSON with 'model' and/or 'train' sections (e.g. a tuner's best trial)")
    p.add_argument("--init-from", help="model directory whose weights start a new run (same architecture): fine-tuning")
    p.add_argument("--val-folder", help="validate on this folder of scored examples instead of the data set's val "
                   "split (vsep crosstest --split val: recordings, voices and rooms held out whole); the best epoch, "
                   "early stopping and the learning-rate schedule follow it")
    p.add_argument("--max-minutes", type=float, help="stop cleanly after this many minutes (resume later)")
    p.add_argument("--strategy", choices=distribute.STRATEGIES, default="default", help=distribute.HELP)
    p.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="train on the readable records of damaged shards and count what was left out "
                        "(default: a damaged shard stops the run before it starts)")
    config.add_arguments(p, ModelConfig)
    config.add_arguments(p, TrainConfig)
    return p


def resolve(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig, str]:
    """Configs from (in rising priority) an existing model dir, ``--config``, the command line."""
    mcfg, tcfg, data = ModelConfig(), TrainConfig(), None
    if storage.exists(storage.join(args.model_dir, model_io.CONFIG)):
        mcfg, tcfg, doc = model_io.read_config(args.model_dir)
        data = doc.get("data")
    if args.config:
        doc = json.loads(storage.read_text(args.config))
        if "model" in doc:
            mcfg = config.from_dict(ModelConfig, {**config.to_dict(mcfg), **doc["model"]})
        if "train" in doc:
            tcfg = config.from_dict(TrainConfig, {**config.to_dict(tcfg), **doc["train"]})
    mcfg = config.from_namespace(ModelConfig, args, mcfg)
    tcfg = config.from_namespace(TrainConfig, args, tcfg)
    mcfg.validate()
    data = args.data or data
    if not data:
        raise ValueError("--data is required for a new model")
    if mcfg.embed_dim and tcfg.speaker_loss > 0 and not tcfg.speakers:  # the classifier's classes: the bank's
        from vsep import bank

        tcfg = dataclasses.replace(tcfg, speakers=len(bank.load(data, "train").speakers))
    return mcfg, tcfg, data


class TrainingState:
    """Resumable training state under ``<model_dir>/checkpoints`` (a Keras callback factory)."""

    def __init__(self, model_dir: str, model, tcfg: TrainConfig) -> None:
        import tensorflow as tf

        self.model_dir = model_dir
        self.dir = storage.join(model_dir, "checkpoints")
        self.state_uri = storage.join(self.dir, "state.json")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.dir, max_to_keep=2)
        self.state: dict[str, Any] = {"epoch": 0, "best_val_loss": None, "wait": 0, "stopped": False}
        self.patience = tcfg.patience
        self.failed: str | None = None  # set when the loss becomes NaN: nothing more is saved
        self.skipped = 0  # damaged records left out (--skip-corrupt)
        self.data = ""  # the data set (a speaker bank for conditioned models)

    def restore(self) -> int:
        """Load the checkpoint of the epoch ``state.json`` records, if any; returns the epoch to start from.

        ``state.json`` is written after the checkpoint, so a kill in between leaves
        a newer checkpoint than the state names; the state's own one is restored
        (``max_to_keep=2`` keeps it), so weights, optimizer and epoch agree.
        """
        if self.manager.latest_checkpoint and storage.exists(self.state_uri):
            state = json.loads(storage.read_text(self.state_uri))
            name = f"ckpt-{int(state['epoch'])}"
            path = next((p for p in self.manager.checkpoints if p.rstrip("/").endswith("/" + name)),
                        self.manager.latest_checkpoint)
            self.checkpoint.restore(path).assert_existing_objects_matched()
            self.state = state
        return int(self.state["epoch"])

    def callback(self, steps_per_epoch: int):
        import keras

        state = self

        class Save(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                loss = (logs or {}).get("loss")
                if loss is not None and not math.isfinite(float(loss)) and state.failed is None:
                    done = state.state["epoch"]
                    kept = f"the checkpoint of epoch {done} is kept" if done else "no checkpoint was written"
                    state.failed = (f"the training loss became {float(loss)} at epoch {done + 1}, step {batch + 1}; "
                                    f"stopped, {kept} (lower --learning-rate, or check the data)")
                    self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):
                if state.failed:  # never overwrite the last good checkpoint with NaN weights
                    return
                logs = dict(logs or {})
                val = logs.get("val_loss")
                best = state.state["best_val_loss"]
                if val is not None and (best is None or val < best):
                    state.state.update(best_val_loss=float(val), wait=0, best_epoch=epoch + 1)
                    model_io.save_weights(self.model, state.model_dir)
                    if self.model.cfg.embed_dim:
                        _write_embeddings(self.model, state.model_dir, state.data)
                    _write_onnx(self.model, state.model_dir)
                else:
                    state.state["wait"] += 1
                row = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch, "time": round(time.time(), 1),
                       **{k: round(float(v), 5) for k, v in logs.items()}}
                if state.skipped:
                    row["skipped_records"] = state.skipped
                _append_line(storage.join(state.model_dir, "history.jsonl"), json.dumps(row))
                if state.state["wait"] >= state.patience:
                    state.state["stopped"] = True
                    self.model.stop_training = True
                state.state["epoch"] = epoch + 1
                # weights + optimizer first, then the small state file that points at them
                state.manager.save(checkpoint_number=epoch + 1)
                storage.write_text(state.state_uri, json.dumps(state.state))

        return Save()


def _write_onnx(model, model_dir: str) -> None:
    """``model.onnx`` next to the best weights (local model directories), so ``vsep separate`` starts fast."""
    if "://" in model_dir:
        return
    from vsep import onnx_model

    try:
        onnx_model.write(model, model_dir)
    except Exception as e:  # noqa: BLE001 - the graph is an accelerator; TensorFlow serves without it
        print(f"vsep train: note: model.onnx not written ({str(e).splitlines()[0][:200]})", file=sys.stderr)


def _write_embeddings(model, model_dir: str, bank_root: str) -> None:
    """``embeddings.json`` with the default target's mean embedding: it is served without an enrollment clip."""
    from vsep import enroll_data

    if "://" in model_dir:
        return
    emb = enroll_data.target_embedding(model, bank_root, model.cfg.target)
    if emb is not None:
        model_io.write_embeddings(model_dir, {model.cfg.target: emb})


def _append_line(uri: str, line: str) -> None:
    if "://" not in uri:
        with open(uri, "a") as f:
            f.write(line + "\n")
        return
    old = storage.read_text(uri) if storage.exists(uri) else ""
    storage.write_text(uri, old + line + "\n")


class TimeLimit:
    """Stop cleanly at an epoch end once ``minutes`` have passed (the run resumes later)."""

    def __new__(cls, minutes: float):
        import keras

        deadline = time.time() + minutes * 60

        class _Limit(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if time.time() > deadline:
                    print(f"train: time limit of {minutes} min reached after epoch {epoch + 1}; rerun to resume")
                    self.model.stop_training = True

        return _Limit()


def init_weights(model, mcfg: ModelConfig, model_dir: str) -> None:
    """Start from the weights of ``model_dir`` (fine-tuning); its architecture and STFT must be ``mcfg``'s."""
    other, _, _ = model_io.read_config(model_dir)
    # a model may gain speaker conditioning (from a one-target model), a time RNN or decoder FiLM (from one
    # without: both start as the identity)
    gains = {"embed_dim", "speaker_encoder"} if other.embed_dim == 0 else set()
    gains |= {"time_rnn"} if other.time_rnn == 0 else set()
    gains |= {"time_rnn_levels"} if other.time_rnn_levels < mcfg.time_rnn_levels else set()
    gains |= {"film_decoder"} if not other.film_decoder else set()
    if dataclasses.replace(other, **{k: getattr(mcfg, k) for k in gains}) != mcfg:
        raise ValueError(f"--init-from {model_dir}: its model config differs from this run's")
    source = model_io.load(model_dir)
    # layer by layer: a one-target model starts a speaker-conditioned one (its U-Net layers; FiLM, the
    # encoder and a speaker classifier as initialised), a conditioned one another (without its classifier)
    for layer in source.unet.layers:
        if layer.weights:
            model.unet.get_layer(layer.name).set_weights(layer.get_weights())
    if source.encoder is not None and source.cfg.speaker_encoder == mcfg.speaker_encoder:
        model.encoder.set_weights(source.encoder.get_weights())
    print(f"train: starting from the weights of {model_dir}")


def starting_weights(model, state: TrainingState, mcfg: ModelConfig, tcfg, init_from: str | None) -> int:
    """Restore the run's last checkpoint (a resumed run keeps its own weights) or start from ``init_from``;
    returns the epoch to start from. A frozen GE2E encoder is loaded on every start, resumed or not: the
    checkpoints do not hold its LSTMs (it is never called in training on precomputed embeddings)."""
    initial_epoch = state.restore()
    if init_from and not initial_epoch:
        init_weights(model, mcfg, init_from)
    if mcfg.speaker_encoder == "ge2e":
        _ge2e_weights(model, tcfg, init_from)
    return initial_epoch


def _ge2e_weights(model, tcfg, init_from: str | None) -> None:
    """A run of a GE2E-conditioned model takes the encoder's pretrained weights from ``--speaker-weights``
    (or from an ``--init-from`` model that has them); a frozen encoder with random weights is refused."""
    if tcfg.speaker_weights:
        from vsep.ge2e import load_npz

        load_npz(model.encoder, tcfg.speaker_weights)
        print(f"train: GE2E speaker encoder from {tcfg.speaker_weights}")
    elif init_from and model_io.read_config(init_from)[0].speaker_encoder == "ge2e":
        model.encoder.set_weights(model_io.load(init_from).encoder.get_weights())
    else:
        raise ValueError("speaker_encoder 'ge2e' needs its pretrained weights: --speaker-weights FILE.npz "
                         "(tools/ge2e_weights.py)")


def train(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Train (or resume) and return the last state."""
    strategy = distribute.strategy_from_flag(args.strategy)  # before any other TensorFlow call
    args.model_dir = distribute.task_model_dir(args.model_dir)  # non-chief workers: <model-dir>/workers/<task>
    storage.preflight(args.model_dir, args.data, args.config, args.init_from, args.val_folder)
    mcfg, tcfg, data = resolve(args)
    if storage.exists(storage.join(args.model_dir, model_io.CONFIG)):
        old, _, _ = model_io.read_config(args.model_dir)
        if old != mcfg:
            raise ValueError(f"{args.model_dir} holds a model with another architecture or STFT; use a new --model-dir")
    if mcfg.embed_dim:
        from vsep import bank

        bank.load(data, "train")  # one clear line if it is not a bank
        if tcfg.precomputed_embeddings and mcfg.speaker_encoder != "ge2e":
            raise ValueError("precomputed_embeddings needs a frozen pretrained encoder (--speaker-encoder ge2e)")
        target = json.loads(storage.read_text(storage.join(data, "bank.json")))["target"]
        manifest = {"skipped": None}
    else:
        from vsep.manifest import check_compatible, read_manifest, skipped_records

        manifest = read_manifest(data)
        train_files = check_compatible(manifest, mcfg, "train", args.skip_corrupt)
        val_files = check_compatible(manifest, mcfg, "val", args.skip_corrupt)
        target = manifest["config"].get("target")
    skipped = 0 if mcfg.embed_dim else skipped_records(manifest)
    if skipped:
        damaged = ", ".join(u.rsplit("/", 1)[-1] for u in manifest["skipped"])
        print(f"train: --skip-corrupt: leaving out {skipped} damaged records of {damaged}")
    if target != mcfg.target:
        raise ValueError(f"data set target {target!r} differs from model target {mcfg.target!r}")
    if args.val_folder and mcfg.embed_dim:
        raise ValueError("--val-folder validates one-target models; a conditioned model validates on its bank")

    import keras
    import tensorflow as tf

    from vsep.dataset import folder_dataset, make_dataset
    from vsep.model import SeparationModel

    folder_val = folder_dataset(args.val_folder, mcfg, tcfg.batch_size) if args.val_folder else None
    keras.utils.set_random_seed(tcfg.seed)
    # build first: a config the U-Net cannot be built from must not be written into the model dir
    with strategy.scope():
        model = SeparationModel(mcfg, tcfg, precision=tcfg.precision).build_for()
    if "://" not in args.model_dir:
        os.makedirs(args.model_dir, exist_ok=True)
    extra = {"val_folder": args.val_folder} if args.val_folder else {}
    doc = model_io.config_document(mcfg, tcfg, data=data, command=["vsep", "train", *argv], **extra)
    model_io.write_config(args.model_dir, doc)
    with strategy.scope():
        model.compile(optimizer=keras.optimizers.Adam(tcfg.learning_rate))
        model.optimizer.build(model.trainable_variables)
    state = TrainingState(args.model_dir, model, tcfg)
    state.skipped = skipped
    state.data = data
    initial_epoch = starting_weights(model, state, mcfg, tcfg, args.init_from)
    if state.state.get("stopped") or initial_epoch >= tcfg.epochs:
        print(f"train: already finished at epoch {initial_epoch} (best val_loss {state.state['best_val_loss']})")
        return state.state
    if initial_epoch:
        print(f"train: resuming from epoch {initial_epoch}")
    skips = manifest.get("skipped")
    if mcfg.embed_dim:  # any speaker as target, mixed on the fly from a speaker bank
        from vsep.enroll_data import make_datasets

        train_ds, val_ds, val_steps = make_datasets(data, mcfg, tcfg, model)
    else:
        train_ds = distribute.shard_inputs(make_dataset(train_files, mcfg, tcfg, training=True, skipped=skips),
                                           len(train_files))
        # a fixed set of validation batches, cached and repeated: every epoch scores the same patches
        if folder_val is not None:  # all of the folder's patches
            val_ds, val_steps = folder_val
        else:
            val_steps = min(tcfg.validation_steps, -(-manifest["counts"]["val"] // tcfg.batch_size))
            val_ds = make_dataset(val_files, mcfg, tcfg, training=False, skipped=skips).take(val_steps).cache()
        val_ds = distribute.shard_inputs(val_ds.repeat())
    callbacks = [
        state.callback(tcfg.steps_per_epoch),
        # gs:// through TF's gfile (an appendable GCS file re-uploads the whole log on each flush)
        keras.callbacks.CSVLogger(storage.join(args.model_dir, "train_log.csv"), append=True),
        # halve the step size when validation stalls (state is not checkpointed: a resumed run starts
        # from the restored optimizer's rate and counts patience afresh)
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3, min_lr=1e-5, verbose=0),
        keras.callbacks.TensorBoard(storage.join(args.model_dir, "tensorboard"), update_freq="epoch"),
    ]
    if args.max_minutes:
        callbacks.append(TimeLimit(args.max_minutes))
    verbose = 2 if (args.quiet or not sys.stdout.isatty()) else 1
    tf.get_logger().setLevel("ERROR")
    model.fit(
        train_ds,
        epochs=tcfg.epochs,
        steps_per_epoch=tcfg.steps_per_epoch,
        validation_data=val_ds,
        validation_steps=val_steps,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=verbose,
    )
    if state.failed:
        raise ValueError(state.failed)
    left_out = f"; {skipped} damaged records left out" if skipped else ""
    print(
        f"train: epoch {state.state['epoch']}, best val_loss {state.state['best_val_loss']} "
        f"(epoch {state.state.get('best_epoch')}); model in {args.model_dir}{left_out}"
    )
    return state.state


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        train(args, argv)
    except (ValueError, FileNotFoundError, storage.StorageError) as e:
        print(f"vsep train: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
