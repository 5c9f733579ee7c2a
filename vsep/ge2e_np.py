"""The GE2E speaker encoder (:mod:`vsep.ge2e`) in NumPy, so a GE2E-conditioned model enrolls without TensorFlow.

``vsep separate --enroll`` on a model served by onnxruntime (``model.onnx``) embeds the clips here: the same
front end as :class:`vsep.ge2e.GE2E` (level raised to -30 dBFS, 25 ms periodic-Hann frames every 10 ms,
zero-padded by half a window at both ends, 40 mel bands of power, partials of 160 frames every 77), the same
3-layer LSTM (ONNX ``LSTM`` ops in onnxruntime; a NumPy loop without it), linear layer, ReLU and unit means. :func:`write` puts the encoder's weights and the mel filters
into ``ge2e.npz`` next to ``model.onnx``, stamped with the digest of the weights file they were taken from, so
a stale file is never used (as :func:`vsep.onnx_model.stamp` does for the graphs).

Shapes: clips ``[n, samples]`` at 16 kHz -> unit embeddings ``[n, 256]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FILE = "ge2e.npz"
RATE, N_FFT, HOP = 16000, 400, 160
PARTIAL, PARTIAL_STEP = 160, 77
TARGET_DBFS = -30.0


def write(model, model_dir: str | Path, digest: str) -> Path:
    """Save ``model.encoder``'s weights (Keras layout) and mel filters as ``model_dir/ge2e.npz``."""
    enc = model.encoder
    arrays = {"mel": enc.mel, "digest": np.array(digest)}
    for i, lstm in enumerate(enc.lstms):
        for name, w in zip(("kernel", "recurrent", "bias"), lstm.get_weights()):
            arrays[f"lstm{i}_{name}"] = np.asarray(w, np.float32)
    arrays["linear_kernel"], arrays["linear_bias"] = (np.asarray(w, np.float32) for w in enc.linear.get_weights())
    path = Path(model_dir) / FILE
    tmp = path.with_suffix(".partial.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _onnx_gates(m: np.ndarray, units: int) -> np.ndarray:
    """Keras gate blocks (i, f, c, o) along the last axis -> ONNX's (i, o, f, c)."""
    i, f, c, o = (m[..., k * units : (k + 1) * units] for k in range(4))
    return np.concatenate([i, o, f, c], axis=-1)


def lstm_graph(weights: dict[str, np.ndarray]) -> bytes:
    """ONNX graph ``partials [P, 160, 40]`` -> ``partial_embeddings [P, 256]`` (before the unit length): the
    three LSTM layers (ONNX ``LSTM``, 4-5x faster than the NumPy loop) and the linear layer with its ReLU."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([0], np.int64), "axis0"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(weights["linear_kernel"], "linear_kernel"),
             numpy_helper.from_array(weights["linear_bias"], "linear_bias")]
    nodes, x = [helper.make_node("Transpose", ["partials"], ["time_major"], perm=[1, 0, 2])], "time_major"
    for i in range(3):
        k, r, b = (weights[f"lstm{i}_{n}"] for n in ("kernel", "recurrent", "bias"))
        units = r.shape[0]
        inits += [numpy_helper.from_array(_onnx_gates(k, units).T[None].astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(_onnx_gates(r, units).T[None].astype(np.float32), f"r{i}"),
                  numpy_helper.from_array(np.concatenate([_onnx_gates(b, units), np.zeros(4 * units)])[None]
                                          .astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("LSTM", [x, f"w{i}", f"r{i}", f"b{i}"], [f"y{i}", f"h{i}"], hidden_size=units),
                  helper.make_node("Squeeze", [f"y{i}", "axis1"], [f"seq{i}"])]  # [T, P, u]
        x = f"seq{i}"
    nodes += [helper.make_node("Squeeze", ["h2", "axis0"], ["last"]),
              helper.make_node("MatMul", ["last", "linear_kernel"], ["linear"]),
              helper.make_node("Add", ["linear", "linear_bias"], ["biased"]),
              helper.make_node("Relu", ["biased"], ["partial_embeddings"])]
    graph = helper.make_graph(nodes, "ge2e", [helper.make_tensor_value_info("partials", TensorProto.FLOAT,
                                                                           ["p", PARTIAL, None])],
                              [helper.make_tensor_value_info("partial_embeddings", TensorProto.FLOAT, ["p", None])],
                              initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vsep")
    proto.ir_version = 8
    return proto.SerializeToString()


def _session(weights: dict[str, np.ndarray]):
    """An onnxruntime session of :func:`lstm_graph` (one thread), or None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    return ort.InferenceSession(lstm_graph(weights), opts, providers=["CPUExecutionProvider"])


class NumpyGE2E:
    """``embed(clips [n, samples]) -> [n, 256]`` (what :mod:`vsep.enroll` needs of a model: ``cfg`` and
    ``embed``)."""

    def __init__(self, cfg, weights: dict[str, np.ndarray], onnx: bool = True) -> None:
        self.cfg, self.w = cfg, weights
        self.session = _session(weights) if onnx else None
        self.window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic

    def partials(self, clip: np.ndarray) -> np.ndarray:
        """``[samples]`` -> mel power partials ``[P, 160, 40]``."""
        x = np.asarray(clip, np.float32)
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) + 1e-9
        x = np.pad(x * np.float32(np.clip(10.0 ** (TARGET_DBFS / 20.0) / rms, 1.0, 1e5)), N_FFT // 2)
        count = 1 + (len(x) - N_FFT) // HOP
        frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP][:count] * self.window
        spec = np.fft.rfft(frames, axis=-1)
        mels = (spec.real**2 + spec.imag**2).astype(np.float32) @ self.w["mel"]  # [T, 40]
        if len(mels) < PARTIAL:
            mels = np.pad(mels, [(0, PARTIAL - len(mels)), (0, 0)])
        starts = range(0, len(mels) - PARTIAL + 1, PARTIAL_STEP)
        return np.stack([mels[s : s + PARTIAL] for s in starts])

    def _lstm(self, x: np.ndarray, layer: int, sequences: bool) -> np.ndarray:
        """Keras LSTM (gates i, f, c, o): ``[P, T, in]`` -> ``[P, T, 256]`` or the last state ``[P, 256]``."""
        k, r, b = (self.w[f"lstm{layer}_{n}"] for n in ("kernel", "recurrent", "bias"))
        units = r.shape[0]
        xs = x @ k + b  # [P, T, 4u]
        h = np.zeros((x.shape[0], units), np.float32)
        c = np.zeros_like(h)
        out = []
        for t in range(x.shape[1]):
            z = xs[:, t] + h @ r
            i, f = _sigmoid(z[:, :units]), _sigmoid(z[:, units : 2 * units])
            c = f * c + i * np.tanh(z[:, 2 * units : 3 * units])
            h = _sigmoid(z[:, 3 * units :]) * np.tanh(c)
            out.append(h)
        return np.stack(out, axis=1) if sequences else h

    def embed(self, clips) -> np.ndarray:
        out = []
        for clip in np.asarray(clips, np.float32):
            h = self.partials(clip)
            if self.session is not None:
                e = self.session.run(["partial_embeddings"], {"partials": h})[0]
            else:
                for layer in range(3):
                    h = self._lstm(h, layer, sequences=layer < 2)
                e = np.maximum(h @ self.w["linear_kernel"] + self.w["linear_bias"], 0.0)
            e = e / (np.linalg.norm(e, axis=-1, keepdims=True) + 1e-9)
            mean = e.mean(axis=0)
            out.append(mean / (np.linalg.norm(mean) + 1e-9))
        return np.stack(out).astype(np.float32)


def load(model_dir: str, cfg, digest: str) -> NumpyGE2E | None:
    """The NumPy encoder of ``model_dir`` if its ``ge2e.npz`` was taken from weights of ``digest``; else None."""
    path = Path(model_dir) / FILE
    if "://" in model_dir or not path.is_file():
        return None
    with np.load(path) as z:
        weights = {k: z[k] for k in z.files}
    return NumpyGE2E(cfg, weights) if str(weights.pop("digest")) == digest else None
