"""The keras-tuner HyperModel of vsep: one draw of the search space -> a compiled SeparationModel.

:class:`VsepHyperModel` declares the space of a
:class:`~tuner.space.ResolvedSpace` (STFT, U-Net depth / filters / kernel
size / dropout, loss, learning rate), builds the
:class:`~vsep.model.SeparationModel` of a draw and trains it on the prepared
data set's ``train`` split, validating on ``val``. The model's ``test_step``
reports ``loss``, ``si_sdr`` and ``si_sdri``, so a trial's history holds
``val_si_sdri`` (the default objective) and ``val_loss``.

Each trial makes its own ``tf.data`` pipelines, because the patch length in
samples depends on the STFT drawn (see :func:`tuner.space.patch_frames_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import keras_tuner as kt

from tuner.space import ResolvedSpace
from vsep.config import ModelConfig, TrainConfig


class VsepHyperModel(kt.HyperModel):
    """Search space of vsep models over fixed base configs and a prepared data set's shards."""

    def __init__(self, resolved: ResolvedSpace, train_files: Sequence[str] = (),
                 val_files: Sequence[str] = ()) -> None:
        super().__init__(name="vsep", tunable=True)
        self.resolved = resolved
        self.train_files = list(train_files)
        self.val_files = list(val_files)

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        """Register every hyperparameter, the conditional depth choices included, in one pass."""
        self.resolved.declare(hp)

    def configs(self, hp: kt.HyperParameters) -> tuple[ModelConfig, TrainConfig]:
        """Model and training config of the draw in ``hp`` (declaring the space if needed)."""
        self.resolved.declare(hp)
        return self.resolved.configs(hp.values)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        """The compiled, built :class:`SeparationModel` of one draw."""
        from vsep.model import SeparationModel

        mcfg, tcfg = self.configs(hp)
        keras.utils.set_random_seed(tcfg.seed)
        model = SeparationModel(mcfg, tcfg).build_for()
        model.compile(optimizer=keras.optimizers.Adam(tcfg.learning_rate))
        # built now, so a Hyperband trial that continues another restores its Adam state too
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        """Train ``model`` on the train split, validating on ``val``; returns the Keras ``History``.

        ``kwargs`` are what the tuner passes to ``fit`` (``epochs``,
        ``initial_epoch`` for Hyperband, ``callbacks``, ``verbose``).
        """
        from vsep.dataset import make_dataset

        if not self.train_files or not self.val_files:
            raise ValueError("VsepHyperModel has no train/val shards to fit on")
        mcfg, tcfg = self.configs(hp)
        train_ds = make_dataset(self.train_files, mcfg, tcfg, training=True)
        val_ds = make_dataset(self.val_files, mcfg, tcfg, training=False).take(tcfg.validation_steps).cache()
        kwargs.setdefault("epochs", tcfg.epochs)
        return model.fit(train_ds, validation_data=val_ds, steps_per_epoch=tcfg.steps_per_epoch, **kwargs)
