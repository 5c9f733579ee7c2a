"""The speaker encoder of a conditioned model as an ONNX graph (``speaker.onnx``), and its NumPy framing.

:meth:`vsep.model.SeparationModel.embed` without TensorFlow: the enrollment
clip is framed here as :class:`vsep.stft.STFT` frames it (``frame_length -
frame_step`` zeros at both ends, a frame every hop, zeros at the end), and the
graph does the rest: the windowed DFT (:func:`vsep.onnx_model.dft_bases`),
magnitudes without the Nyquist bin, level normalisation, ``log1p``, the
encoder's batch norm (folded), dilated 1-D convolutions, the mean over
frames, the projection and unit length.

Graph signature: ``frames`` float32 ``[b, T, frame_length]`` -> ``embedding`` float32 ``[b, embed_dim]``.
"""

from __future__ import annotations

import numpy as np

SPEAKER_ONNX = "speaker.onnx"


def frame(clip: np.ndarray, cfg) -> np.ndarray:
    """``clip [samples]`` -> ``[1, T, frame_length]``, the frames :class:`vsep.stft.STFT` makes."""
    pad = cfg.frame_length - cfg.frame_step
    x = np.concatenate([np.zeros(pad, np.float32), np.asarray(clip, np.float32), np.zeros(pad, np.float32)])
    frames = -(-len(x) // cfg.frame_step)
    x = np.concatenate([x, np.zeros((frames - 1) * cfg.frame_step + cfg.frame_length - len(x), np.float32)])
    view = np.lib.stride_tricks.sliding_window_view(x, cfg.frame_length)[:: cfg.frame_step][:frames]
    return np.ascontiguousarray(view)[None]


def build(model) -> bytes:
    """The serialised ONNX graph of ``model.encoder`` (a conditioned :class:`vsep.model.SeparationModel`)."""
    from onnx import TensorProto, checker, helper

    from vsep import speaker
    from vsep.model import LEVEL_FLOOR
    from vsep.onnx_model import OPSET, _fold_bn, _Graph, dft_bases

    cfg, enc = model.cfg, model.encoder
    g = _Graph()
    i64 = lambda v: g.const(np.asarray(v, np.int64), "shape")  # noqa: E731
    analysis, _ = dft_bases(g, cfg)
    spec = g.op("MatMul", "frames", analysis)  # [b, T, 2F]
    nbins = cfg.fft_length // 2 + 1
    re = g.op("Slice", spec, i64([0]), i64([cfg.bins]), i64([2]))
    im = g.op("Slice", spec, i64([nbins]), i64([nbins + cfg.bins]), i64([2]))
    mag = g.op("Sqrt", g.op("Add", g.op("Add", g.op("Mul", re, re), g.op("Mul", im, im)), g.const(np.float32(1e-12))))
    if cfg.input_norm == "mean":
        level = g.op("ReduceMean", mag, i64([1, 2]), keepdims=1)
        mag = g.op("Div", mag, g.op("Add", level, g.const(np.float32(LEVEL_FLOOR))))
    x = g.op("Log", g.op("Add", mag, g.const(np.float32(1.0))))  # [b, T, bins]
    scale, shift = _fold_bn(enc.get_layer("spk_norm"))
    x = g.op("Add", g.op("Mul", x, g.const(scale.astype(np.float32))), g.const(shift.astype(np.float32)))
    x = g.op("Transpose", x, perm=[0, 2, 1])  # [b, bins, T]
    for i, d in enumerate(speaker.ENCODER_DILATIONS):
        kernel, bias = enc.get_layer(f"spk_conv{i}").get_weights()  # [k, in, out]
        k = kernel.shape[0]
        x = g.op("Conv", x, g.const(kernel.transpose(2, 1, 0).astype(np.float32)), g.const(bias.astype(np.float32)),
                 dilations=[d], pads=[d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2], kernel_shape=[k])
        x = g.op("Relu", x)
    x = g.op("ReduceMean", x, i64([2]), keepdims=0)  # [b, channels]
    kernel, bias = enc.get_layer("spk_embed").get_weights()
    x = g.op("Add", g.op("MatMul", x, g.const(kernel.astype(np.float32))), g.const(bias.astype(np.float32)))
    norm = g.op("Sqrt", g.op("Max", g.op("ReduceSum", g.op("Mul", x, x), i64([1]), keepdims=1),
                             g.const(np.float32(1e-12))))
    g.nodes.append(helper.make_node("Div", [x, norm], ["embedding"]))
    graph = helper.make_graph(
        g.nodes, "vsep_speaker",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["b", "T", cfg.frame_length])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["b", cfg.embed_dim])],
        initializer=g.inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="vsep")
    proto.ir_version = 8
    checker.check_model(proto)
    return proto.SerializeToString()


class OnnxEmbedder:
    """``embed(clips [n, samples]) -> [n, embed_dim]`` with an onnxruntime session of ``speaker.onnx``
    (what :mod:`vsep.enroll` needs of a model: ``cfg`` and ``embed``)."""

    def __init__(self, cfg, session) -> None:
        self.cfg, self.session = cfg, session

    def embed(self, clips) -> np.ndarray:
        clips = np.asarray(clips, np.float32)
        return np.concatenate([self.session.run(["embedding"], {"frames": frame(c, self.cfg)})[0] for c in clips])
