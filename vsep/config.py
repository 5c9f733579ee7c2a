"""Configuration as data: frozen dataclasses, serialised to JSON, never pickled.

Every option a command exposes is declared once, as a dataclass field with a
``help`` entry in its metadata. :func:`add_arguments` turns those fields into
``argparse`` options (``--window-s``), :func:`from_namespace` reads them back,
and :func:`save` / :func:`load` write the resolved config next to the output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

CONFIG_VERSION = 1
INPUT_NORMS = ("mean", "none")
SPEAKER_ENCODERS = ("learned", "ge2e")
PRECISIONS = ("float32", "mixed_bfloat16")
LOSSES = ("l1_mag", "sisdr", "snr", "l1_mag+sisdr", "l1_mag+snr")


def opt(default: Any, help: str, **kw: Any) -> Any:  # noqa: A002 - argparse's word
    """A dataclass field with a help text for the command line."""
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults: configs are frozen")
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class CollectConfig:
    """How raw recordings become clean per-speaker clips in the lake."""

    sample_rate: int = opt(16000, "sample rate of the lake, in Hz")
    trim_db: float = opt(
        45.0, "trim leading/trailing audio quieter than this many dB below the clip's peak"
    )
    min_duration_s: float = opt(0.5, "clips shorter than this after trimming are rejected")
    http_timeout_s: float = opt(60.0, "timeout of one http(s) download, in seconds")


@dataclass(frozen=True)
class PrepareConfig:
    """How lake clips become windows, mixtures and TFRecord shards."""

    target: str = opt("trump", "name of the target speaker (a folder or manifest speaker)")
    sample_rate: int = opt(16000, "sample rate of the mixtures; must match the lake's")
    window_s: float = opt(4.0, "length of one training window, in seconds")
    hop_s: float = opt(2.0, "hop between target windows, in seconds (below window_s: overlapping windows)")
    min_window_s: float = opt(
        1.0, "target clips or clip tails at least this long are zero-padded to a window; shorter are dropped"
    )
    loudness: str = opt("lufs", "source normalisation: 'lufs' or 'peak'", choices=("lufs", "peak"))
    lufs_target: float = opt(-23.0, "loudness every source is normalised to, in LUFS")
    peak_target_db: float = opt(-3.0, "peak level in 'peak' mode, in dBFS")
    silence_lufs: float = opt(-50.0, "windows quieter than this (LUFS) count as silent")
    tir_db: tuple[float, float] = opt(
        (-5.0, 5.0), "target-to-interference ratio range in dB (uniform)"
    )
    snr_db: tuple[float, float] = opt(
        (0.0, 10.0), "other-speech-to-noise ratio range in dB for 'both' mixtures"
    )
    mixtures_per_window: int = opt(3, "number of mixtures made from each target window")
    kind_weights: tuple[float, float, float, float, float] = opt(
        (0.35, 0.2, 0.3, 0.075, 0.075),
        "weights of the mixture kinds speech, noise, both, target-only, other-only",
    )
    reverb_prob: float = opt(0.15, "probability of convolving the target with a room response")
    room_prob: float = opt(0.0, "probability that the interfering voice of a reverberant mixture is in "
                           "the target's room too (the same response)")
    max_clip_peak: float = opt(0.99, "mixtures louder than this peak are scaled down with their sources")
    seed: int = opt(0, "seed of every random choice; a run is reproducible from it")
    split_fractions: tuple[float, float, float] = opt(
        (0.8, 0.1, 0.1), "fractions of recordings in train, val, test"
    )
    split_other_by: str = opt(
        "speaker",
        "split non-target speech by 'speaker' (no speaker in two splits) or 'recording'",
        choices=("speaker", "recording"),
    )
    val_holdout: tuple[str, ...] = opt(
        (), "patterns of recordings that go wholly to val, matched on '<speaker>/<source file name>' "
        "(e.g. 'trump/utnet_*' a target source, 'vcc2016-*/*' a corpus of voices, 'babble/sda_*' noises, "
        "'rir/venue_*' rooms): settings are chosen on sources, voices and rooms training never saw"
    )
    test_holdout: tuple[str, ...] = opt(
        (), "patterns of recordings that go wholly to test (as --val-holdout): the cross-source test"
    )
    num_shards: int = opt(4, "number of train shards (val and test get a quarter, at least 1)")
    compression: str = opt("gzip", "TFRecord compression: 'gzip' or 'none'", choices=("gzip", "none"))

    @property
    def window(self) -> int:
        """Window length in samples."""
        return int(round(self.window_s * self.sample_rate))

    @property
    def min_window(self) -> int:
        """Shortest target audio, in samples, that still makes a window."""
        return int(round(self.min_window_s * self.sample_rate))

    @property
    def hop(self) -> int:
        """Hop between target windows in samples."""
        return int(round(self.hop_s * self.sample_rate))

    def validate(self) -> None:
        """Raise ``ValueError`` with one clear line for an impossible setting."""
        if self.window_s < 0.4:
            raise ValueError("window_s must be at least 0.4 s (the loudness meter's block)")
        if not 0.4 <= self.min_window_s <= self.window_s:
            raise ValueError("min_window_s must lie between 0.4 s and window_s")
        if self.hop_s <= 0:
            raise ValueError("hop_s must be positive")
        if self.mixtures_per_window < 1:
            raise ValueError("mixtures_per_window must be at least 1")
        for name in ("reverb_prob", "room_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if min(self.kind_weights) < 0 or sum(self.kind_weights) <= 0:
            raise ValueError("kind_weights must be non-negative with a positive sum")
        if abs(sum(self.split_fractions) - 1.0) > 1e-6 or min(self.split_fractions) < 0:
            raise ValueError("split_fractions must be non-negative and sum to 1")
        for name in ("tir_db", "snr_db"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: low end {lo} is above high end {hi}")
        if not self.target:
            raise ValueError("target speaker name is empty")


@dataclass(frozen=True)
class ModelConfig:
    """The separation model: STFT and U-Net architecture (one config builds both)."""

    target: str = opt("trump", "name of the target speaker (names the output file)")
    sample_rate: int = opt(16000, "sample rate the model works at, in Hz")
    frame_length: int = opt(512, "STFT window size in samples")
    frame_step: int = opt(256, "STFT hop in samples (overlap = 1 - step / length)")
    fft_length: int = opt(512, "FFT size (>= frame_length)")
    depth: int = opt(5, "U-Net encoder/decoder layers")
    filters: int = opt(16, "filters of the first encoder layer (doubled per layer)")
    kernel_size: int = opt(5, "convolution kernel size")
    dropout: float = opt(0.3, "dropout of the first three decoder layers")
    patch_frames: int = opt(250, "STFT frames of one training patch (250 x 256 at 16 kHz: 3.97 s)")
    chunk_frames: int = opt(256, "STFT frames of one inference chunk (overlap-add between chunks)")
    embed_dim: int = opt(0, "size of the speaker embedding the masks are conditioned on (0: a model of one target "
                         "speaker; > 0: any speaker, given an enrollment clip; see vsep.speaker)")
    speaker_encoder: str = opt(
        "learned",
        "a conditioned model's speaker encoder: 'learned' with the separator (vsep.speaker), or 'ge2e', the "
        "pretrained GE2E encoder, frozen (vsep.ge2e; embed_dim 256; weights from vsep train --speaker-weights)",
        choices=SPEAKER_ENCODERS,
    )
    time_rnn: int = opt(0, "units of a bidirectional GRU along time at the U-Net's bottleneck, on every "
                        "frequency row, added as a residual (0: none; the graph is then served by TensorFlow)")
    time_rnn_levels: int = opt(1, "U-Net levels with such a GRU, from the bottleneck up: 1 the bottleneck alone, 2 "
                               "also the first decoder level (twice the frames and bins), and so on")
    film_decoder: bool = opt(False, "a conditioned model also modulates every decoder layer but the last by the "
                             "embedding (FiLM, identity at initialisation), not only the encoder layers")
    input_norm: str = opt(
        "mean",
        "U-Net input level: 'mean' divides each patch's magnitudes by their mean (level-invariant), "
        "'none' uses them as they are",
        choices=INPUT_NORMS,
    )

    @property
    def bins(self) -> int:
        """Frequency bins the U-Net sees: fft_length // 2 (the Nyquist bin is dropped)."""
        return self.fft_length // 2

    def patch_samples(self, frames: int | None = None) -> int:
        """Waveform length in samples whose STFT has exactly ``frames`` frames.

        :class:`vsep.stft.STFT` pads ``frame_length - frame_step`` zeros at each
        end and frames with ``pad_end``, so ``n`` samples give
        ``ceil((n + 2 * (frame_length - frame_step)) / frame_step)`` frames.
        """
        frames = self.patch_frames if frames is None else frames
        return frames * self.frame_step - 2 * (self.frame_length - self.frame_step)

    def validate(self) -> None:
        """Raise ``ValueError`` with one clear line for an impossible setting."""
        if self.fft_length < self.frame_length:
            raise ValueError("fft_length must be at least frame_length")
        if self.fft_length & (self.fft_length - 1):
            raise ValueError("fft_length must be a power of two")
        if not 0 < self.frame_step <= self.frame_length // 2:
            raise ValueError("frame_step must be positive and at most half of frame_length (>= 50% overlap)")
        if not 1 <= self.depth <= 8 or self.filters < 1 or self.kernel_size < 1:
            raise ValueError("depth must be 1..8, filters and kernel_size positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must lie in [0, 1)")
        if (self.fft_length // 2) % 2**self.depth:
            raise ValueError(f"fft_length // 2 = {self.fft_length // 2} must be divisible by 2**depth = {2**self.depth}")
        if self.patch_frames < 2**self.depth:
            raise ValueError(f"patch_frames must be at least 2**depth = {2**self.depth}")
        if self.embed_dim < 0:
            raise ValueError("embed_dim must be 0 (one target) or positive")
        if not 1 <= self.time_rnn_levels <= self.depth or (self.time_rnn_levels > 1 and not self.time_rnn):
            raise ValueError(f"time_rnn_levels must be 1 to depth = {self.depth}, and above 1 needs time_rnn")
        if self.film_decoder and not self.embed_dim:
            raise ValueError("film_decoder needs a conditioned model (embed_dim > 0)")
        if self.speaker_encoder not in SPEAKER_ENCODERS:
            raise ValueError(f"speaker_encoder must be one of {', '.join(SPEAKER_ENCODERS)}")
        if self.speaker_encoder == "ge2e" and (self.embed_dim != 256 or self.sample_rate != 16000):
            raise ValueError("speaker_encoder 'ge2e' needs embed_dim 256 and sample_rate 16000")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)}")
        if self.patch_samples() < self.frame_step or self.patch_samples(self.chunk_frames) < self.frame_step:
            raise ValueError("patch_frames and chunk_frames must cover more than the STFT padding")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained from prepared TFRecords."""

    batch_size: int = opt(8, "patches per training step")
    epochs: int = opt(50, "maximum number of epochs")
    steps_per_epoch: int = opt(200, "training steps per epoch (the data repeats)")
    validation_steps: int = opt(20, "validation batches per epoch")
    learning_rate: float = opt(1e-3, "Adam learning rate")
    loss: str = opt("snr", "loss: 'l1_mag' (Jansson), 'sisdr' (waveform, scale-invariant), 'snr' (waveform, "
                    "level-aware: what BSSEval's SDR rewards), 'l1_mag+sisdr' or 'l1_mag+snr'; waveform losses "
                    "are capped at 30 dB", choices=LOSSES)
    remix_prob: float = opt(0.7, "probability of remixing a patch's target with another patch's interference")
    gain_db: tuple[float, float] = opt((-6.0, 6.0), "random gain applied to a whole patch, in dB")
    tir_db: tuple[float, float] = opt((-6.0, 6.0), "target-to-interference ratio range of remixed patches")
    eq_prob: float = opt(0.0, "probability that a patch's target, and separately its interference, pass "
                         "through a random recording channel (smooth EQ, optional low-pass)")
    eq_db: float = opt(6.0, "largest gain of the random channel's main EQ component, in dB")
    lowpass_prob: float = opt(0.25, "probability that a random channel also low-passes (35-95%% of Nyquist)")
    other_shift_prob: float = opt(0.0, "probability that a remixed patch's interference is resampled (voices "
                                  "shifted in pitch and formants): more other speakers than the data set has")
    other_shift: float = opt(0.15, "largest shift of a resampled interference (0.15: up to 15%% higher or lower)")
    impostor_prob: float = opt(0.0, "probability that a remixed patch's interference is another patch's target "
                               "with its voice shifted (pitch and formants): a sound-alike that must count as rest")
    impostor_shift: tuple[float, float] = opt((0.1, 0.2), "range of the impostor's voice shift (0.1: 10%% "
                                              "higher or lower)")
    precision: str = opt("float32", "U-Net arithmetic: 'float32' or 'mixed_bfloat16' (bfloat16 compute, float32 "
                         "weights, STFT and masks: faster on CPUs with AMX/AVX512-BF16 and on GPUs)",
                         choices=PRECISIONS)
    shuffle_buffer: int = opt(256, "examples in the shuffle buffer")
    patience: int = opt(8, "epochs without validation improvement before early stopping")
    speaker_loss: float = opt(0.0, "weight of the speaker-identification loss on the enrollment embeddings of a "
                              "conditioned model (a cosine classifier over the bank's training voices): "
                              "teaches the encoder to tell voices apart from the first step")
    keep_weight: float = opt(0.0, "weight of a loss term on the share of the target's STFT magnitude the target "
                             "mask deletes (only deficits count): deleting target speech costs more than "
                             "leaking interference, so an unsure model keeps the voice (0: off)")
    speakers: int = opt(0, "classes of that classifier: the training voices of the bank (set by vsep train)")
    speaker_weights: str = opt("", "an .npz of the pretrained speaker encoder's weights (tools/ge2e_weights.py), "
                               "loaded into a 'ge2e' encoder when a run starts (then saved with the model)")
    target_share: float = opt(0.2, "share of a conditioned model's training examples whose target is the bank's "
                              "named target (its default voice)")
    pair_share: float = opt(0.0, "share of a conditioned model's training examples given in pairs: one mixture "
                            "of two voices twice, once with each voice's enrollment and that voice as the target, "
                            "so the enrollment is the only cue that tells the two answers apart")
    similar_pairs: float = opt(0.0, "share of those pairs whose second voice is one of the voices nearest the "
                               "first by mean embedding (hard negatives, not the same person shifted; needs "
                               "precomputed_embeddings): more of the mixtures where voices are easy to confuse; "
                               "training only")
    embed_noise: float = opt(0.0, "standard deviation of Gaussian noise added to each element of a training "
                             "enrollment's embedding before it is rectified and made unit length again (needs "
                             "precomputed_embeddings; with GE2E, 0.03 keeps a cosine of 0.93 to the clean one, "
                             "0.05 of 0.85): the masks learn to answer to voices between those of the training "
                             "set; training only")
    precomputed_embeddings: bool = opt(False, "a conditioned model with the frozen pretrained encoder (speaker_"
                                       "encoder 'ge2e') trains on embeddings of the bank's windows computed once "
                                       "(cached in the bank): an enrollment is the mean of 1-8 windows' "
                                       "embeddings (4-32 s), without the enrollment's channel augmentation")
    voice_shifts: tuple[float, ...] = opt((), "percent shifts of pitch and formants (e.g. -12 12) that make new "
                                         "training voices of every voice in the bank's train split, each a "
                                         "speaker of its own (vocal-tract-length perturbation): more voices than "
                                         "the data has, for a conditioned model")
    seed: int = opt(0, "seed of shuffling, crops and augmentation")


RUNTIMES = ("auto", "onnx", "tf")  # what serves a model (vsep.runtime)


@dataclass(frozen=True)
class SeparateConfig:
    """How a trained model is applied (``vsep separate``, ``evaluate``, ``export``, the API)."""

    wiener: bool = opt(False, "ratio-normalised (Wiener-style) masks: target + rest = the input")
    shifts: int = opt(2, "average this many passes offset by a fraction of a chunk hop and off the STFT frame "
                      "grid (test-time shift averaging; 1: a single pass): each costs one more forward pass")
    target_floor: float = opt(0.3, "least share of the mixture the target mask keeps in every time-frequency "
                              "cell (0: none): the target is never deleted where the model does not recognise "
                              "it, interference is suppressed by at most 20 log10(floor) dB; 0.3 chosen on the "
                              "cross-source validation set")
    precision: str = opt("auto", "U-Net arithmetic at inference: 'float32', 'mixed_bfloat16' (bfloat16 "
                         "compute; STFT, masks and output stay float32) or 'auto' (bfloat16 where the CPU has "
                         "AMX or AVX512-BF16 units, else float32; measured: same scores within 0.01 dB, forward pass 1.2x faster "
                         "on this CPU)", choices=(*PRECISIONS, "auto"))
    runtime: str = opt("auto", "what runs the model: 'onnx' (onnxruntime on the model directory's model.onnx: "
                       "starts without TensorFlow), 'tf' (TensorFlow; honours --precision) or 'auto' (onnx where "
                       "the model directory has a model.onnx made from its weights, else tf)",
                       choices=RUNTIMES)

    def validate(self) -> None:
        if self.shifts < 1:
            raise ValueError(f"shifts must be >= 1, got {self.shifts}")
        if not 0.0 <= self.target_floor < 1.0:
            raise ValueError(f"target_floor must lie in [0, 1), got {self.target_floor}")
        if self.precision not in (*PRECISIONS, "auto"):
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, auto")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")


CROSS_CONDITIONS = ("voices", "noise", "room", "soundalike")


@dataclass(frozen=True)
class CrossTestConfig:
    """The cross-source evaluation set (``vsep crosstest``): mixtures of recordings held out whole."""

    split: str = opt("test", "whose held-out patterns to use: 'test' (report once per recipe) or 'val' "
                     "(choose settings)", choices=("val", "test"))
    conditions: tuple[str, ...] = opt(CROSS_CONDITIONS, "conditions to build (voices, noise, room, soundalike)")
    per_condition: int = opt(20, "mixtures per condition")
    seconds: float = opt(8.0, "length of one mixture, in seconds")
    tir_db: tuple[float, float, float] = opt((-5.0, 0.0, 5.0), "target-to-interference ratios, in turn")
    seed: int = opt(0, "seed of every random choice")

    def validate(self) -> None:
        bad = [c for c in self.conditions if c not in CROSS_CONDITIONS]
        if bad or not self.conditions:
            raise ValueError(f"unknown condition {bad[0] if bad else '(none)'}: choose from "
                             f"{', '.join(CROSS_CONDITIONS)}")
        if self.per_condition < 1 or self.seconds < 1.0:
            raise ValueError("per_condition must be at least 1 and seconds at least 1.0")


# ---------------------------------------------------------------- JSON


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, coercing lists to tuples; unknown keys are an error."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(hints[k], v) for k, v in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        return tuple(_coerce(args[0] if args else Any, v) for v in value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def dumps(cfg: Any) -> str:
    """JSON text of a config, with its class name and the config format version."""
    return json.dumps(
        {"config": type(cfg).__name__, "version": CONFIG_VERSION, **to_dict(cfg)},
        indent=2,
        sort_keys=True,
    )


def loads(cls: type[T], text: str) -> T:
    """Parse JSON written by :func:`dumps` (or a plain dict of fields)."""
    data = json.loads(text)
    kind = data.pop("config", cls.__name__)
    version = data.pop("version", CONFIG_VERSION)
    if kind != cls.__name__:
        raise ValueError(f"config is a {kind}, expected {cls.__name__}")
    if version > CONFIG_VERSION:
        raise ValueError(f"config version {version} is newer than this vsep ({CONFIG_VERSION})")
    return from_dict(cls, data)


# ---------------------------------------------------------------- argparse


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Declare one ``--option`` per field of ``cls`` (defaults come from ``cls``)."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        kw: dict[str, Any] = {"dest": f.name, "default": None}
        help_text = f.metadata.get("help", "")
        kw["help"] = f"{help_text} (default: {_show(f.default)})"
        if typing.get_origin(hint) is tuple and typing.get_args(hint)[-1] is Ellipsis:
            kw["type"] = typing.get_args(hint)[0]
            kw["nargs"] = "*"
            kw["metavar"] = "P"
        elif typing.get_origin(hint) is tuple:
            kw["type"] = float
            kw["nargs"] = len(typing.get_args(hint))
            kw["metavar"] = "X"
        elif hint is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = hint
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        group.add_argument(flag, **kw)


def _show(v: Any) -> str:
    return " ".join(str(x) for x in v) if isinstance(v, tuple) else str(v)


def from_namespace(cls: type[T], ns: argparse.Namespace, base: T | None = None) -> T:
    """Config from parsed options: fields given on the command line override ``base``."""
    cfg = base if base is not None else cls()
    given = {
        f.name: getattr(ns, f.name)
        for f in dataclasses.fields(cls)
        if getattr(ns, f.name, None) is not None
    }
    hints = typing.get_type_hints(cls)
    return dataclasses.replace(cfg, **{k: _coerce(hints[k], v) for k, v in given.items()})
