"""Which runtime serves a model: the ONNX graph (fast start) or TensorFlow.

``vsep separate``, :class:`vsep.Separator` and ``vsep evaluate`` get their
separation functions here. With ``runtime='auto'`` a local model directory
whose ``model.onnx`` (or its 8-bit ``model.int8.onnx``, preferred) was made from its
current weights (:mod:`vsep.onnx_model`, :mod:`vsep.onnx_int8`) is served by onnxruntime, so TensorFlow is never imported (about 2.8 s of CPU
saved at start-up); anything else (no graph, a stale one, a ``gs://``
model, no onnxruntime) is served by TensorFlow, with the same chunking and
overlap-add (:mod:`vsep.inference`) and the same results within float error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vsep.config import ModelConfig, SeparateConfig


@dataclass
class Served:
    """A model ready to separate: ``mono [samples] -> [S, samples]``,
    ``channels [C, samples] -> [S, C, samples]`` (at ``cfg.sample_rate``), the ``S`` sources named by
    ``names`` (the voices, then ``rest``)."""

    cfg: ModelConfig
    runtime: str
    mono: Callable[[np.ndarray], np.ndarray]
    channels: Callable[[np.ndarray], np.ndarray]
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.names = self.names or (self.cfg.target, "rest")


def onnx_session(model_dir: str, name: str | None = None):
    """An onnxruntime session of ``model_dir/<name>`` (default ``model.onnx``) if it was made from the
    directory's current weights, the model is local and onnxruntime is installed; else None."""
    from vsep import model_io, onnx_model

    path, weights = Path(model_dir) / (name or onnx_model.ONNX), Path(model_dir) / model_io.WEIGHTS
    if "://" in model_dir or not path.is_file() or not weights.is_file():
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one core per call; the chunker runs one call per core at once
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - an unreadable graph is as good as none: TensorFlow serves
        return None
    return session if onnx_model.stamp(session) == onnx_model.weights_digest(weights) else None


def chunk_session(model_dir: str) -> tuple[object | None, str]:
    """The chunk graph to serve and its runtime label: ``model.int8.onnx`` where current (8-bit
    convolutions, :mod:`vsep.onnx_int8`), else ``model.onnx``, else ``(None, "tf")``."""
    from vsep import onnx_int8

    session = onnx_session(model_dir, onnx_int8.INT8_ONNX)
    if session is not None:
        return session, "onnx-int8"
    session = onnx_session(model_dir)
    return session, "onnx" if session is not None else "tf"


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load(model_dir: str | None, scfg: SeparateConfig | None = None, voices: list | None = None) -> Served:
    """Serve ``model_dir`` (default: the bundled model) as ``scfg`` says; raises
    :class:`vsep.model_io.ModelDirError` for a model directory that cannot be used.

    ``voices``: ``[(name, clip)]`` for a speaker-conditioned model, ``clip`` a path, a waveform at the
    model's rate or ``None`` (a voice stored with the model; :mod:`vsep.enroll`); default: its target.
    """
    from vsep import inference, model_io

    scfg = scfg or SeparateConfig()
    scfg.validate()
    model_dir = str(model_dir or model_io.BUNDLED)
    cfg, _, _ = model_io.read_config(model_dir)
    if cfg.embed_dim:
        return _load_conditioned(model_dir, scfg, voices or [(cfg.target, None)])
    if voices and not (len(voices) == 1 and voices[0][0] == cfg.target and voices[0][1] is None):
        raise ValueError(f"{model_dir}: separates only {cfg.target!r}; --enroll needs a speaker-conditioned model "
                         "(ModelConfig.embed_dim > 0)")
    session, label = (None, "tf") if scfg.runtime == "tf" else chunk_session(model_dir)
    if scfg.runtime == "onnx" and session is None:
        raise ValueError(f"{model_dir}: no model.onnx made from its weights (vsep export --onnx), "
                         "or onnxruntime is not installed")
    if session is not None:
        floor = np.array(scfg.target_floor, np.float32)
        wiener = np.array(1.0 if scfg.wiener else 0.0, np.float32)

        def call(chunks: np.ndarray) -> np.ndarray:
            return session.run(["sources"], {"rows": chunks, "floor": floor, "wiener": wiener})[0]

        def build(channels: bool) -> Callable:
            return inference.build_chunked_fn(call, cfg, scfg.shifts, channels=channels, workers=_threads())

        return Served(cfg, label, build(False), build(True))
    model = model_io.load(model_dir)
    kw = tf_options(scfg)
    return Served(model.cfg, "tf", inference.build_separate_fn(model, **kw),
                  inference.build_separate_fn(model, **kw, channels=True))


def _load_conditioned(model_dir: str, scfg: SeparateConfig, voices: list) -> Served:
    """A speaker-conditioned model serving ``voices``; their embeddings are computed once (one pass over
    each clip). onnxruntime where both graphs are current (``runtime`` auto or onnx), else TensorFlow."""
    from vsep import enroll, inference, model_io

    cfg, _, _ = model_io.read_config(model_dir)
    stored = model_io.read_embeddings(model_dir)
    session = encoder = None
    label = "tf"
    if scfg.runtime != "tf":
        (session, label), encoder = chunk_session(model_dir), _onnx_encoder(model_dir, cfg)
    if scfg.runtime == "onnx" and (session is None or encoder is None):
        raise ValueError(f"{model_dir}: no model.onnx and speaker encoder made from its weights (vsep export "
                         "--onnx), or onnxruntime is not installed")
    if session is not None and encoder is not None:
        embeddings = enroll.resolve(encoder, stored, voices)
        emb = np.stack(list(embeddings.values())).astype(np.float32)
        several = len(emb) > 1  # debate mode: ratio masks of the voices' claims, no floor
        floor = np.array(0.0 if several else scfg.target_floor, np.float32)
        wiener = np.array(1.0 if several or scfg.wiener else 0.0, np.float32)

        def call(chunks: np.ndarray) -> np.ndarray:
            return session.run(["sources"], {"rows": chunks, "floor": floor, "wiener": wiener, "embeddings": emb})[0]

        def build(channels: bool) -> Callable:
            return inference.build_chunked_fn(call, cfg, scfg.shifts, channels=channels, workers=_threads())

        return Served(cfg, label, build(False), build(True), (*embeddings, "rest"))
    model = model_io.load(model_dir)
    embeddings = enroll.resolve(model, stored, voices)
    emb = np.stack(list(embeddings.values()))
    kw = tf_options(scfg)
    return Served(model.cfg, "tf", inference.build_separate_fn(model, **kw, embeddings=emb),
                  inference.build_separate_fn(model, **kw, channels=True, embeddings=emb), (*embeddings, "rest"))


def _onnx_encoder(model_dir: str, cfg: ModelConfig):
    """What embeds enrollment clips without TensorFlow, made from the directory's current weights: the
    ``speaker.onnx`` graph (learned encoder) or the NumPy GE2E (:mod:`vsep.ge2e_np`); else None."""
    from vsep import ge2e_np, model_io, onnx_model, onnx_speaker

    if cfg.speaker_encoder == "ge2e":
        weights = Path(model_dir) / model_io.WEIGHTS
        return ge2e_np.load(model_dir, cfg, onnx_model.weights_digest(weights)) if weights.is_file() else None
    session = onnx_session(model_dir, onnx_speaker.SPEAKER_ONNX)
    return None if session is None else onnx_speaker.OnnxEmbedder(cfg, session)


def tf_options(scfg: SeparateConfig) -> dict:
    """Keyword arguments of :func:`vsep.inference.build_separate_fn` for ``scfg``."""
    return {"wiener": scfg.wiener, "shifts": scfg.shifts, "precision": scfg.precision,
            "target_floor": scfg.target_floor}
