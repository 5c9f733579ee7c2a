"""The search space of ``vsep tune``, declared once as frozen dataclasses, and what it may draw.

:class:`SearchSpace` lists the values a search may try (``--frame-lengths 512
1024 --depths 4 5 6 ...``); :class:`TuneConfig` says how to search (tuner,
objective, trials). Both follow the convention of :mod:`vsep.config`: every
option is a dataclass field with a ``help`` entry, turned into ``--options``
by :func:`add_arguments` (which, unlike :func:`vsep.config.add_arguments`,
also knows variable-length tuples: ``tuple[int, ...]`` takes one or more
values).

:func:`resolve_space` turns a space into the combinations that can actually
be built. A combination is valid when the :class:`~vsep.config.ModelConfig`
it makes passes :meth:`~vsep.config.ModelConfig.validate` *and* the U-Net can
be built from it (``fft_length // 2`` divisible by ``2**depth``, which
``validate`` does not check; :func:`vsep.model.build_unet` does). Only valid
(STFT, depth) pairs are offered to keras-tuner, so no draw can be invalid; a
space with none is an :class:`EmptySpaceError` (one line).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any

from vsep.config import LOSSES, ModelConfig, TrainConfig, opt

TUNERS = ("hyperband", "random", "bayesian")
OBJECTIVES = {"val_si_sdri": "max", "val_snri": "max", "val_loss": "min"}


class EmptySpaceError(ValueError):
    """The search space, as narrowed, holds no valid model; the message is one line."""


@dataclass(frozen=True)
class SearchSpace:
    """The values a search may try. One value fixes a parameter; ends of a range that agree fix it."""

    frame_lengths: tuple[int, ...] = opt((512, 1024), "STFT window sizes to try (fft_length = frame_length)")
    overlaps: tuple[float, ...] = opt(
        (0.75, 0.5), "STFT overlaps to try: frame_step = frame_length * (1 - overlap), 0.75 -> /4, 0.5 -> /2"
    )
    depths: tuple[int, ...] = opt((4, 5, 6), "U-Net depths to try (only those the STFT allows are drawn)")
    base_filters: tuple[int, ...] = opt((8, 16, 32), "filters of the first encoder layer to try")
    kernel_sizes: tuple[int, ...] = opt((3, 5), "convolution kernel sizes to try")
    dropouts: tuple[float, ...] = opt((0.0, 0.25, 0.5), "decoder dropouts to try")
    losses: tuple[str, ...] = opt(LOSSES, "training losses to try", choices=LOSSES)
    learning_rate_range: tuple[float, float] = opt(
        (1e-4, 3e-3), "Adam learning rate range, sampled log-uniformly (equal ends: fixed)"
    )
    patch_s: float = opt(
        2.0, "training/validation patch length in seconds, the same for every trial (patch_frames follows per STFT)"
    )


@dataclass(frozen=True)
class TuneConfig:
    """How the search runs."""

    tuner: str = opt("hyperband", "search algorithm: 'hyperband', 'random' or 'bayesian'", choices=TUNERS)
    objective: str = opt(
        "val_si_sdri",
        "what a trial is scored by: 'val_si_sdri' (validation SI-SDR improvement over the mixture, dB, "
        "maximised), 'val_snri' (SNR improvement: also punishes a wrong output level, as BSSEval's SDR does; "
        "maximised) or 'val_loss' (minimised)",
        choices=tuple(OBJECTIVES),
    )
    max_trials: int = opt(20, "trials of a 'random' or 'bayesian' search (Hyperband's follow from --epochs)")
    hyperband_factor: int = opt(3, "Hyperband: reduction factor between brackets' rounds")
    hyperband_iterations: int = opt(1, "Hyperband: how many times the whole algorithm runs")
    project_name: str = opt("vsep_tune", "keras-tuner project name: the folder under --results")

    def validate(self) -> None:
        """Raise ``ValueError`` with one clear line for an impossible setting."""
        if self.max_trials < 1:
            raise ValueError("max_trials must be at least 1")
        if self.hyperband_factor < 2:
            raise ValueError("hyperband_factor must be at least 2")
        if self.hyperband_iterations < 1:
            raise ValueError("hyperband_iterations must be at least 1")
        if not self.project_name or "/" in self.project_name:
            raise ValueError("project_name must be a non-empty folder name without '/'")


# ModelConfig / TrainConfig fields the search sets; their singular options are refused by `vsep tune`.
TUNED_MODEL_FIELDS = {
    "frame_length": "--frame-lengths",
    "frame_step": "--overlaps",
    "fft_length": "--frame-lengths (fft_length = frame_length)",
    "depth": "--depths",
    "filters": "--base-filters",
    "kernel_size": "--kernel-sizes",
    "dropout": "--dropouts",
    "patch_frames": "--patch-s",
}
TUNED_TRAIN_FIELDS = {"learning_rate": "--learning-rate-range", "loss": "--losses"}


@dataclass(frozen=True)
class Stft:
    """One STFT setting of the space, with the patch that lasts ``patch_s`` and the depths it allows."""

    frame_length: int
    frame_step: int
    patch_frames: int
    depths: tuple[int, ...]

    @property
    def label(self) -> str:
        """The value of the ``stft`` hyperparameter: ``"frame_length/frame_step"``."""
        return f"{self.frame_length}/{self.frame_step}"


def frame_step(frame_length: int, overlap: float) -> int | None:
    """``frame_length * (1 - overlap)`` when it is a positive whole number of samples, else ``None``."""
    step = frame_length * (1.0 - overlap)
    if step <= 0 or abs(step - round(step)) > 1e-6:
        return None
    return int(round(step))


def patch_frames_for(seconds: float, sample_rate: int, frame_length: int, step: int) -> int:
    """Most frames whose patch (:meth:`ModelConfig.patch_samples`) is at most ``seconds`` long.

    Every trial then trains and validates on patches of the same length, to
    within one hop, whatever its STFT.
    """
    samples = int(round(seconds * sample_rate))
    return max(1, math.floor((samples + 2 * (frame_length - step)) / step))


def buildable(cfg: ModelConfig) -> str | None:
    """Why ``cfg`` cannot make a model (one line), or ``None`` when it can.

    :meth:`ModelConfig.validate` plus the U-Net's own condition, which
    ``validate`` does not check: ``fft_length // 2`` divisible by ``2**depth``.
    """
    try:
        cfg.validate()
    except ValueError as e:
        return str(e)
    if cfg.bins % 2**cfg.depth:
        return f"fft_length // 2 = {cfg.bins} is not divisible by 2**depth = {2**cfg.depth}"
    return None


def model_config(base: ModelConfig, stft: Stft, depth: int, filters: int, kernel_size: int,
                 dropout: float) -> ModelConfig:
    """The :class:`ModelConfig` of one draw: ``base`` with the searched fields replaced."""
    return dataclasses.replace(
        base, frame_length=stft.frame_length, frame_step=stft.frame_step, fft_length=stft.frame_length,
        patch_frames=stft.patch_frames, depth=depth, filters=filters, kernel_size=kernel_size, dropout=dropout,
    )


def resolve_space(space: SearchSpace, base: ModelConfig) -> list[Stft]:
    """The STFT settings of ``space`` that allow at least one depth, each with the depths it allows.

    Raises :class:`EmptySpaceError` (one line) when a list is empty, a value
    is impossible on its own (dropout 1.5, kernel size 0, a learning rate
    range that is not positive and increasing) or no (STFT, depth) pair is
    valid.
    """
    for f in dataclasses.fields(SearchSpace):
        value = getattr(space, f.name)
        if isinstance(value, tuple) and not value:
            raise EmptySpaceError(f"search space is empty: no values for {f.name}")
    bad_losses = sorted(set(space.losses) - set(LOSSES))
    if bad_losses:
        raise EmptySpaceError(f"unknown loss {bad_losses[0]!r} (choose from {', '.join(LOSSES)})")
    lo, hi = space.learning_rate_range
    if not 0 < lo <= hi:
        raise EmptySpaceError(f"learning_rate_range {lo:g} {hi:g} must be positive and increasing")
    if space.patch_s <= 0:
        raise EmptySpaceError("patch_s must be positive")

    stfts: list[Stft] = []
    tried: list[str] = []
    for fl in sorted(set(space.frame_lengths)):
        for ov in sorted(set(space.overlaps), reverse=True):
            step = frame_step(fl, ov)
            if step is None:
                tried.append(f"{fl}@{ov:g} (no whole-sample hop)")
                continue
            frames = patch_frames_for(space.patch_s, base.sample_rate, fl, step)
            ok = []
            why = ""
            for d in sorted(set(space.depths)):
                cfg = dataclasses.replace(base, frame_length=fl, frame_step=step, fft_length=fl,
                                          patch_frames=frames, depth=d)
                reason = buildable(cfg)
                if reason is None:
                    ok.append(d)
                else:
                    why = why or reason
            if ok:
                stfts.append(Stft(fl, step, frames, tuple(ok)))
            else:
                tried.append(f"{fl}/{step} ({why})")
    if not stfts:
        depths = " ".join(str(d) for d in sorted(set(space.depths)))
        raise EmptySpaceError(
            f"search space is empty: no depth in {{{depths}}} fits any STFT with {space.patch_s:g} s patches: "
            + "; ".join(tried)
        )

    # the other parameters are independent of the STFT: each value must pass on its own
    probe = (stfts[0], stfts[0].depths[0])
    checks = (
        [("base_filters", v, {"filters": v}) for v in space.base_filters]
        + [("kernel_sizes", v, {"kernel_size": v}) for v in space.kernel_sizes]
        + [("dropouts", v, {"dropout": v}) for v in space.dropouts]
    )
    for name, value, change in checks:
        cfg = dataclasses.replace(model_config(base, probe[0], probe[1], base.filters, base.kernel_size,
                                               base.dropout), **change)
        reason = buildable(cfg)
        if reason is not None:
            raise EmptySpaceError(f"{name}: {value} is not a valid value ({reason})")
    return stfts


def depth_groups(stfts: list[Stft]) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """STFT labels grouped by the depths they allow, in first-seen order: ``[(labels, depths), ...]``."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for s in stfts:
        groups.setdefault(s.depths, []).append(s.label)
    return [(tuple(labels), depths) for depths, labels in groups.items()]


def depth_name(labels: tuple[str, ...], single: bool) -> str:
    """Hyperparameter name of the depth choice for these STFT labels (``depth`` when there is one group).

    keras-tuner needs a distinct name per conditional scope (one name in two
    scopes mixes their values up), hence ``depth[1024/256,512/128]``.
    """
    return "depth" if single else f"depth[{','.join(labels)}]"


class ResolvedSpace:
    """A :class:`SearchSpace` over base configs, as keras-tuner hyperparameters and back.

    Hyperparameters (names as keras-tuner shows them):

    ``stft``
        ``"frame_length/frame_step"`` of a valid STFT setting (``fft_length =
        frame_length``; the patch length in frames follows from ``patch_s``).
    ``depth``
        conditional on ``stft`` when STFT settings allow different depths:
        then one choice per group, named ``depth[<stft labels>]``.
    ``filters``, ``kernel_size``, ``dropout``, ``loss``, ``learning_rate``
        independent; a single value is a ``Fixed`` hyperparameter.

    :meth:`declare` works on anything with keras-tuner's ``HyperParameters``
    methods (``Choice``, ``Fixed``, ``Float``, ``conditional_scope``), so this
    module needs no TensorFlow.
    """

    def __init__(self, space: SearchSpace, base_model: ModelConfig, base_train: TrainConfig) -> None:
        self.space = space
        self.base_model = base_model
        self.base_train = base_train
        self.stfts = resolve_space(space, base_model)
        self.groups = depth_groups(self.stfts)
        self._by_label = {s.label: s for s in self.stfts}

    def declare(self, hp: Any) -> dict[str, Any]:
        """Declare every hyperparameter on ``hp`` (conditional ones too); the active values by field name."""
        s = self.space
        stft = _choice(hp, "stft", [x.label for x in self.stfts])
        depth = None
        single = len(self.groups) == 1
        for labels, depths in self.groups:
            name = depth_name(labels, single)
            if single:
                depth = _choice(hp, name, depths)
            else:
                with hp.conditional_scope("stft", list(labels)):
                    value = _choice(hp, name, depths)
                depth = value if value is not None else depth
        lo, hi = s.learning_rate_range
        return {
            "stft": stft,
            "depth": depth,
            "filters": _choice(hp, "filters", sorted(set(s.base_filters))),
            "kernel_size": _choice(hp, "kernel_size", sorted(set(s.kernel_sizes))),
            "dropout": _choice(hp, "dropout", sorted(set(s.dropouts))),
            "loss": _choice(hp, "loss", list(dict.fromkeys(s.losses))),
            "learning_rate": hp.Fixed("learning_rate", float(lo)) if lo == hi
            else hp.Float("learning_rate", float(lo), float(hi), sampling="log"),
        }

    def depth_of(self, values: dict[str, Any]) -> int:
        """The depth in a trial's hyperparameter values (whichever depth choice is active)."""
        label = values["stft"]
        single = len(self.groups) == 1
        for labels, _ in self.groups:
            if label in labels:
                return int(values[depth_name(labels, single)])
        raise ValueError(f"stft {label!r} is not in this search space")

    def configs(self, values: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
        """The model and training configs of one draw (``HyperParameters.values``)."""
        stft = self._by_label.get(values["stft"])
        if stft is None:
            raise ValueError(f"stft {values['stft']!r} is not in this search space")
        mcfg = model_config(self.base_model, stft, self.depth_of(values), int(values["filters"]),
                            int(values["kernel_size"]), float(values["dropout"]))
        tcfg = dataclasses.replace(self.base_train, loss=str(values["loss"]),
                                   learning_rate=float(values["learning_rate"]))
        return mcfg, tcfg

    def combinations(self) -> list[dict[str, Any]]:
        """The valid STFT settings with their patch length and allowed depths (for ``search_space.json``)."""
        return [{"stft": x.label, "frame_length": x.frame_length, "frame_step": x.frame_step,
                 "fft_length": x.frame_length, "patch_frames": x.patch_frames, "depths": list(x.depths)}
                for x in self.stfts]

    def size(self) -> int:
        """Number of distinct discrete draws (the learning rate counted once)."""
        s = self.space
        per = len(set(s.base_filters)) * len(set(s.kernel_sizes)) * len(set(s.dropouts)) * len(set(s.losses))
        return per * sum(len(x.depths) for x in self.stfts)


def _choice(hp: Any, name: str, values: list[Any]) -> Any:
    """``hp.Fixed`` for one value, else ``hp.Choice`` (ordered for numbers)."""
    if len(values) == 1:
        return hp.Fixed(name, values[0])
    return hp.Choice(name, values)


# ---------------------------------------------------------------- argparse


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--option`` per field of ``cls``; ``tuple[T, ...]`` fields take one or more values."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        kw: dict[str, Any] = {"dest": f.name, "default": None}
        default = " ".join(str(v) for v in f.default) if isinstance(f.default, tuple) else str(f.default)
        kw["help"] = f"{f.metadata.get('help', '')} (default: {default})"
        if typing.get_origin(hint) is tuple:
            variable = len(args) == 2 and args[1] is Ellipsis
            kw["type"] = args[0]
            kw["nargs"] = "+" if variable else len(args)
            kw["metavar"] = "X"
        else:
            kw["type"] = hint
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        group.add_argument("--" + f.name.replace("_", "-"), **kw)


def from_namespace(cls: type, ns: argparse.Namespace) -> Any:
    """``cls`` with the fields given on the command line (tuples stay tuples)."""
    given = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if getattr(ns, f.name, None) is not None}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})


def check_not_given(ns: argparse.Namespace) -> None:
    """Refuse the singular options of searched fields (``--depth 4``): the space sets them."""
    for name, hint in {**TUNED_MODEL_FIELDS, **TUNED_TRAIN_FIELDS}.items():
        if getattr(ns, name, None) is not None:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} is searched by vsep tune: give the values to try with {hint}")


def hide_tuned(parser: argparse.ArgumentParser) -> None:
    """Keep the searched singular options out of ``--help`` (they are refused when given)."""
    for action in parser._actions:  # argparse has no public way to edit an option's help
        if action.dest in TUNED_MODEL_FIELDS or action.dest in TUNED_TRAIN_FIELDS:
            action.help = argparse.SUPPRESS


__all__ = [
    "LOSSES",
    "OBJECTIVES",
    "TUNERS",
    "EmptySpaceError",
    "SearchSpace",
    "Stft",
    "TuneConfig",
    "buildable",
    "depth_groups",
    "depth_name",
    "model_config",
    "resolve_space",
]
