"""keras-tuner tuners for vsep: Hyperband, RandomSearch, BayesianOptimization with run records and ``gs://`` sync.

keras-tuner writes its project (``oracle.json``, ``trial_*/trial.json``,
checkpoints) through ``tf.io.gfile`` and Keras' h5 writer; rather than rely on
TensorFlow's own GCS client (no emulator support, h5 needs a local file), a
search into ``gs://`` runs the keras-tuner project in a local work folder and
:class:`ProjectSync` copies it up with :mod:`vsep.storage` after every trial
and at the end (and down again at the start, to resume).

Each process also writes a *run record* per trial it ran,
``trial_<id>/run-<tuner id>.json`` (tuner id, host, pid, status, seconds),
which is how the trials table says which worker ran which trial.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import keras_tuner as kt

from vsep import storage

RUN_RECORD_PREFIX = "run-"


class ProjectSync:
    """Mirror of a local keras-tuner project folder at a remote URI (no-op when ``remote`` is None)."""

    def __init__(self, local: str, remote: str | None) -> None:
        self.local = local
        self.remote = remote
        self._sent: dict[str, tuple[float, int]] = {}

    def _remote_of(self, path: str) -> str:
        assert self.remote is not None
        return storage.join(self.remote, *os.path.relpath(path, self.local).split(os.sep))

    def download(self, under: str = "") -> int:
        """Copy remote files (below ``under``, relative) that are missing locally; returns how many."""
        if not self.remote:
            return 0
        prefix = storage.join(self.remote, under) if under else self.remote
        count = 0
        for uri in storage.list_files(prefix):
            rel = uri[len(self.remote):].lstrip("/")
            path = os.path.join(self.local, *rel.split("/"))
            if not os.path.exists(path):
                data = storage.read_bytes(uri)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
                self._sent[path] = _stamp(path)
                count += 1
        return count

    def upload(self) -> int:
        """Copy local files that are new or changed since the last upload; returns how many."""
        if not self.remote:
            return 0
        count = 0
        for root, _dirs, files in os.walk(self.local):
            for name in sorted(files):
                path = os.path.join(root, name)
                stamp = _stamp(path)
                if self._sent.get(path) != stamp:
                    with open(path, "rb") as f:
                        storage.write_bytes(self._remote_of(path), f.read())
                    self._sent[path] = stamp
                    count += 1
        return count


def _stamp(path: str) -> tuple[float, int]:
    st = os.stat(path)
    return (st.st_mtime, st.st_size)


class VsepTunerMixin:
    """What vsep adds to a keras-tuner tuner: one-pass space declaration, run records, sync.

    Set :attr:`sync` after construction (the tuner's project folder and its
    remote mirror, if any).
    """

    sync: ProjectSync | None = None

    def _populate_initial_space(self) -> None:
        # keras-tuner builds the model repeatedly to discover conditional
        # hyperparameters; VsepHyperModel.declare_hyperparameters registers all
        # of them in one pass, so no model is built before the first trial.
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def on_trial_begin(self, trial: Any) -> None:
        self._trial_started = time.time()
        super().on_trial_begin(trial)

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        warm = trial.hyperparameters.values.get("tuner/trial_id")
        if warm is not None and self.sync is not None and self.sync.remote:
            # Hyperband continues another trial's checkpoint, maybe from another machine
            self.sync.download(f"trial_{warm}")
        return super().run_trial(trial, *args, **kwargs)

    def on_trial_end(self, trial: Any) -> None:
        started = getattr(self, "_trial_started", time.time())
        record = {
            "trial_id": trial.trial_id,
            "tuner_id": self.tuner_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "status": str(trial.status),
            "started": round(started, 2),
            "seconds": round(time.time() - started, 2),
        }
        path = os.path.join(self.get_trial_dir(trial.trial_id), f"{RUN_RECORD_PREFIX}{self.tuner_id}.json")
        with open(path, "w") as f:
            json.dump(record, f, indent=2)
        if self.sync is not None:
            # before the oracle hears of the end: a Hyperband trial that continues
            # this one may start on another machine as soon as it does
            self.sync.upload()
        super().on_trial_end(trial)


class VsepHyperband(VsepTunerMixin, kt.Hyperband):
    """Hyperband (the default): successive halving over brackets, continuing the best trials."""


class VsepRandomSearch(VsepTunerMixin, kt.RandomSearch):
    """Random search over the space."""


class VsepBayesianOptimization(VsepTunerMixin, kt.BayesianOptimization):
    """Gaussian-process Bayesian optimisation over the space."""


TUNER_CLASSES: dict[str, type] = {
    "hyperband": VsepHyperband,
    "random": VsepRandomSearch,
    "bayesian": VsepBayesianOptimization,
}
