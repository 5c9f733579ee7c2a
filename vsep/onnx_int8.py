"""An 8-bit version of the ONNX graph: the U-Net in int8 (``model.int8.onnx``).

onnxruntime's static quantization (QOperator, per-channel int8 weights, uint8
activations with ranges calibrated on real recordings) of the U-Net's nodes
only (their names start with :data:`vsep.onnx_model.UNET_SCOPE`): every
``Conv`` becomes ``QLinearConv`` (the decoder's ``Relu`` fused into it), the
LeakyRelus and the skip concatenations run on uint8; depth-to-space, the
sigmoid, the masks, the STFT and the inverse STFT stay float32. Measured on
the bundled model (2-core Xeon, AVX512-VNNI): one stereo chunk on one core
25.1 -> 20.5 ms against the convolutions-only graph, the cross-source
validation set within 0.02 dB of float32 (BENCHMARKS.md). The graph is
stamped with the weights' digest like ``model.onnx``; ``--runtime auto``
prefers it where it is current.

    vsep export --model DIR --onnx --int8 --calibration runs/xtest_val
"""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path

import numpy as np

INT8_ONNX = "model.int8.onnx"
CALIBRATION_CHUNKS = 40
# the U-Net's ops (only its nodes: onnx_model.UNET_SCOPE) that run on uint8 activations: the convolutions
# (with their Relu fused), the LeakyRelus (a lookup table) and the skip concatenations; DepthToSpace, the
# sigmoid, the masks and the STFT stay float32
QUANTIZED = ["Conv", "Relu", "LeakyRelu", "Concat"]


def calibration_chunks(paths: list[str], rate: int, length: int) -> list[np.ndarray]:
    """Up to ``CALIBRATION_CHUNKS`` chunks ``[length]`` of the recordings in ``paths`` (files, or folders
    searched for ``*.wav``/``*.flac``/``*.mp3``), at ``rate``, half-overlapping."""
    from vsep import audio

    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(f for ext in ("wav", "flac", "mp3") for f in glob.glob(f"{p}/**/*.{ext}", recursive=True))
        else:
            files.append(p)
    if not files:
        raise ValueError("--calibration names no audio: give recordings like the ones to separate")
    chunks = []
    for f in files[:: max(1, len(files) // 20)]:
        x = audio.load(Path(f).read_bytes(), rate, f)
        chunks += [x[i : i + length] for i in range(0, len(x) - length + 1, length // 2)]
        if len(chunks) >= CALIBRATION_CHUNKS:
            break
    if not chunks:
        raise ValueError("--calibration recordings are shorter than one chunk")
    return chunks[:CALIBRATION_CHUNKS]


def write(model_dir: str, calibration: list[str], floor: float = 0.3) -> Path:
    """Write ``model_dir/model.int8.onnx`` from its ``model.onnx`` (which must be current)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from vsep import model_io, onnx_model
    from vsep.inference import chunk_geometry
    from vsep.runtime import onnx_session

    if onnx_session(model_dir) is None:
        raise ValueError(f"{model_dir}: no current model.onnx to quantize (vsep export --onnx first)")
    cfg, _, _ = model_io.read_config(model_dir)
    length, _ = chunk_geometry(cfg)
    chunks = calibration_chunks(calibration, cfg.sample_rate, length)
    extra = {}
    if cfg.embed_dim:  # calibrated with the default voice
        stored = model_io.read_embeddings(model_dir)
        if cfg.target not in stored:
            raise ValueError(f"{model_dir}: a conditioned model needs its default voice to be calibrated")
        extra = {"embeddings": stored[cfg.target][None].astype(np.float32)}
    feeds = [{"rows": c[None, None].astype(np.float32), "floor": np.array(floor, np.float32),
              "wiener": np.array(0.0, np.float32), **extra} for c in chunks]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    out = Path(model_dir) / INT8_ONNX
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(str(Path(model_dir) / onnx_model.ONNX), pre, skip_symbolic_shape=True)
        unet = [n.name for n in onnx.load(pre).graph.node if n.name.startswith(onnx_model.UNET_SCOPE)]
        quantize_static(pre, os.path.join(tmp, "q.onnx"), Reader(), quant_format=QuantFormat.QOperator,
                        nodes_to_quantize=unet,
                        per_channel=True, op_types_to_quantize=QUANTIZED, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        proto = onnx.load(os.path.join(tmp, "q.onnx"))
    digest = onnx_model.weights_digest(Path(model_dir) / model_io.WEIGHTS)
    onnx.helper.set_model_props(proto, {onnx_model.WEIGHTS_KEY: digest})
    tmp_out = out.with_suffix(".onnx.partial")
    onnx.save(proto, str(tmp_out))
    tmp_out.replace(out)
    return out
