"""The model as an ONNX graph, for a runtime that starts in a fraction of TensorFlow's time.

:func:`build` writes the same computation as
:meth:`vsep.model.SeparationModel.separate_channels` on one fixed-size
inference chunk, from the trained weights: STFT (frames times the Hann-windowed
DFT basis, folded by its symmetry to half the multiply-adds: :func:`half_bases`),
level normalisation, the U-Net (batch norms folded into the convolutions), the
target floor, optional Wiener-style masks, and the inverse STFT (the synthesis
basis, folded the same way, and overlap-add): one per channel for a one-target model, whose rest is
the input minus the target's unfloored estimate (:meth:`vsep.model.SeparationModel.target_and_rest`),
one per source and channel for a conditioned one. The STFT still belongs to the model: it is exported with it, from
the same sizes, and :mod:`tests.test_onnx` checks the graph against the Keras
model sample by sample. Chunking and overlap-add stay outside
(:mod:`vsep.inference`).

Graph signature (``L = cfg.patch_samples(cfg.chunk_frames)``):

- ``rows`` float32 ``[b, C, L]``: the channels of ``b`` chunks (``C = 1`` for mono);
  the masks are computed on their mean (the downmix);
- ``floor`` float32 ``[]``: the target floor; ``wiener`` float32 ``[]``: 1 for ratio masks;
- ``sources`` float32 ``[b, 2, C, L]``: target and rest of every channel.

The file is written next to the weights (``model.onnx``) and records the
SHA-256 of the weights it was made from, so a retrained model is never served
by a stale graph (:func:`matches`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

ONNX = "model.onnx"
OPSET = 18
WEIGHTS_KEY = "vsep_weights_sha256"
UNET_SCOPE = "unet/"  # names of the U-Net's nodes start so
BN_EPS = 1e-3  # Keras BatchNormalization's default, used by every layer of build_unet


def weights_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class _Graph:
    """A small builder over ``onnx.helper``: every method adds nodes and returns the output's name."""

    def __init__(self) -> None:
        self.nodes, self.inits, self._n = [], [], 0
        self.scope = ""  # prefix of the names given meanwhile (``unet/``: the ops the 8-bit graph quantizes)

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{self.scope}{hint}_{self._n}"

    def const(self, value, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attrs) -> str:
        from onnx import helper

        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out


def stft_factors(frame_length: int, fft_length: int, frame_step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(window [frame_length], synthesis window [fft_length], bin weights [F])`` of ``tf.signal.stft`` /
    ``tf.signal.inverse_stft`` with a periodic Hann window and its ``inverse_stft_window_fn``."""
    n = np.arange(frame_length)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / frame_length)  # periodic Hann
    denom = np.zeros(frame_step)
    for start in range(0, frame_length, frame_step):  # inverse_stft_window_fn: window / sum of squared windows
        seg = window[start : start + frame_step] ** 2
        denom[: len(seg)] += seg
    inv_window = np.zeros(fft_length)
    inv_window[:frame_length] = window / np.tile(denom, -(-frame_length // frame_step))[:frame_length]
    bins = fft_length // 2 + 1
    weight = np.full(bins, 2.0)
    weight[0] = 1.0
    if fft_length % 2 == 0:
        weight[-1] = 1.0
    return window, inv_window, weight / fft_length


def dft_bases(g: _Graph, cfg) -> tuple[str, str]:
    """The Hann-windowed DFT bases (real parts, then imaginary; ``F = fft_length // 2 + 1``), computed by
    the graph itself (a few KB of file instead of 3 MB): analysis ``[frame_length, 2F]`` and synthesis
    ``[2F, frame_length]`` with :func:`stft_factors` folded in. The phase index
    ``k n mod N`` is exact integer arithmetic, so float32 cos and sin only see phases in
    ``[0, 2 pi)``. Needs ``fft_length == frame_length``.
    """
    window, inv_window, weight = stft_factors(cfg.frame_length, cfg.fft_length, cfg.frame_step)
    n_fft = cfg.fft_length
    n = g.const(np.arange(n_fft, dtype=np.int64)[None, :], "n")
    k = g.const(np.arange(n_fft // 2 + 1, dtype=np.int64)[:, None], "k")
    index = g.op("Mod", g.op("Mul", k, n), g.const(np.int64(n_fft)))  # [F, N]
    phase = g.op("Mul", g.op("Cast", index, to=1), g.const(np.float32(2 * np.pi / n_fft)))
    cos_sin = g.op("Concat", g.op("Cos", phase), g.op("Neg", g.op("Sin", phase)), axis=0)  # [2F, N]
    analysis = g.op("Transpose", g.op("Mul", cos_sin, g.const(window.astype(np.float32)[None])), perm=[1, 0])
    scale = np.concatenate([weight, weight]).astype(np.float32)[:, None]  # [2F, 1]
    synthesis = g.op("Mul", g.op("Mul", cos_sin, g.const(scale)), g.const(inv_window.astype(np.float32)[None]))
    return analysis, synthesis


def half_bases(g: _Graph, cfg) -> tuple[str, str, str, str]:
    """:func:`dft_bases` folded by the symmetry of a real frame's DFT: half the multiply-adds.

    The periodic Hann window, its synthesis window and ``cos(2 pi k n / N)`` are even about ``N / 2``, ``sin`` is
    odd, so with ``u[n] = x[n] + x[N - n]`` (``u[0] = x[0]``, ``u[N/2] = x[N/2]``) and ``v[n] = x[n] - x[N - n]``:
    ``re = u @ A_cos [N/2 + 1, F]``, ``im = v @ A_sin [N/2 - 1, F]``; the inverse returns ``P = re @ S_cos
    [F, N/2 + 1]`` (even in ``n``) and ``Q = im @ S_sin [F, N/2 - 1]`` (odd), the frame being ``P + Q`` on
    ``n <= N/2`` and ``P - Q`` mirrored above it.
    """
    window, inv_window, weight = stft_factors(cfg.frame_length, cfg.fft_length, cfg.frame_step)
    n_fft, bins = cfg.fft_length, cfg.fft_length // 2 + 1
    half = n_fft // 2
    n = g.const(np.arange(half + 1, dtype=np.int64)[None, :], "n")
    k = g.const(np.arange(bins, dtype=np.int64)[:, None], "k")
    index = g.op("Mod", g.op("Mul", k, n), g.const(np.int64(n_fft)))  # [F, N/2 + 1]
    phase = g.op("Mul", g.op("Cast", index, to=1), g.const(np.float32(2 * np.pi / n_fft)))
    cos = g.op("Cos", phase)
    nsin = g.op("Slice", g.op("Neg", g.op("Sin", phase)), g.const(np.array([1], np.int64)),
                g.const(np.array([half], np.int64)), g.const(np.array([1], np.int64)))  # [F, N/2 - 1]
    f32 = lambda v: g.const(np.asarray(v, np.float32))  # noqa: E731
    a_cos = g.op("Transpose", g.op("Mul", cos, f32(window[None, : half + 1])), perm=[1, 0])
    a_sin = g.op("Transpose", g.op("Mul", nsin, f32(window[None, 1:half])), perm=[1, 0])
    s_cos = g.op("Mul", cos, f32(weight[:, None] * inv_window[None, : half + 1]))
    s_sin = g.op("Mul", nsin, f32(weight[:, None] * inv_window[None, 1:half]))
    return a_cos, a_sin, s_cos, s_sin


def _slice(g: _Graph, x: str, start: int, end: int, axis: int = 2, step: int = 1) -> str:
    c = lambda v: g.const(np.array([v], np.int64), "shape")  # noqa: E731
    return g.op("Slice", x, c(start), c(end), c(axis), c(step))


def half_stft(g: _Graph, framed: str, bases: tuple[str, str, str, str], n_fft: int) -> str:
    """Frames ``[..., N]`` -> their windowed DFT ``[..., 2F]`` (real parts, then imaginary) with :func:`half_bases`."""
    half = n_fft // 2
    head = _slice(g, framed, 1, half)
    tail = _slice(g, framed, n_fft - 1, half, step=-1)  # x[N - n], n = 1 .. N/2 - 1
    u = g.op("Concat", _slice(g, framed, 0, 1), g.op("Add", head, tail), _slice(g, framed, half, half + 1), axis=2)
    return g.op("Concat", g.op("MatMul", u, bases[0]), g.op("MatMul", g.op("Sub", head, tail), bases[1]), axis=2)


def half_istft(g: _Graph, spec: str, bases: tuple[str, str, str, str], n_fft: int) -> str:
    """Spectra ``[..., 2F]`` -> windowed frames ``[..., N]`` (overlap-add not included), with :func:`half_bases`."""
    half, bins = n_fft // 2, n_fft // 2 + 1
    p = g.op("MatMul", _slice(g, spec, 0, bins), bases[2])  # [..., N/2 + 1]
    q = g.op("MatMul", _slice(g, spec, bins, 2 * bins), bases[3])  # [..., N/2 - 1]
    inner = _slice(g, p, 1, half)
    low = g.op("Concat", _slice(g, p, 0, 1), g.op("Add", inner, q), _slice(g, p, half, half + 1), axis=2)
    high = _slice(g, g.op("Sub", inner, q), half - 2, np.iinfo(np.int64).min, step=-1)  # n = N/2 + 1 .. N - 1
    return g.op("Concat", low, high, axis=2)


def _fold_bn(layer) -> tuple[np.ndarray, np.ndarray]:
    """Batch norm at inference as ``y = x * scale + shift`` (per channel)."""
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in layer.get_weights())
    scale = gamma / np.sqrt(var + BN_EPS)
    return scale, beta - mean * scale


def _same_pads(kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (begin, end) for an even input size and this kernel and stride."""
    total = max(kernel - stride, 0)
    return total // 2, total - total // 2


def _subpixel(kernel: np.ndarray, bias: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A stride-2 'same' transposed convolution (Keras kernel ``[kh, kw, out, in]``) as a convolution
    with ``4 * out`` channels followed by ``DepthToSpace(2)``: returns the ONNX Conv weight
    ``[4 * out, in, K, K]``, its bias and pads. onnxruntime's ConvTranspose is several times slower
    than its Conv on these shapes. Output ``y[2m + p] = sum_d x[m + d] w[k]`` with
    ``k = p + b - 2d`` (``b``: the transposed convolution's leading crop)."""
    b, _ = _same_pads(size, 2)
    taps = [{(p + b - k) // 2: k for k in range(size) if (p + b - k) % 2 == 0} for p in (0, 1)]
    lo = min(min(t) for t in taps)
    hi = max(max(t) for t in taps)
    out_ch, in_ch = kernel.shape[2], kernel.shape[3]
    w = np.zeros((2, 2, out_ch, in_ch, hi - lo + 1, hi - lo + 1), np.float64)
    for p in (0, 1):
        for q in (0, 1):
            for d, kh in taps[p].items():
                for e, kw in taps[q].items():
                    w[p, q, :, :, d - lo, e - lo] = kernel[kh, kw]
    w = w.transpose(2, 0, 1, 3, 4, 5)  # channel c * 4 + 2p + q: DepthToSpace's CRD order
    return (w.reshape(4 * out_ch, in_ch, hi - lo + 1, hi - lo + 1).astype(np.float32),
            np.repeat(np.asarray(bias, np.float64), 4).astype(np.float32), [-lo, -lo, hi, hi])


def _film(g: _Graph, layer, x: str, embeddings: str, batch: str) -> str:
    """:class:`vsep.speaker.FiLM` on ``x [K*b, ch, T, F]`` (voice-major) from ``embeddings [K, D]``; ``batch``: ``[b]``."""
    i64 = lambda v: g.const(np.asarray(v, np.int64), "shape")  # noqa: E731
    kernel, bias = (np.asarray(w, np.float32) for w in layer.get_weights())  # [D, 2ch], [2ch]
    ch = kernel.shape[1] // 2
    gb = g.op("Add", g.op("MatMul", embeddings, g.const(kernel)), g.const(bias))  # [K, 2ch]
    gb = g.op("Tile", g.op("Unsqueeze", gb, i64([1])), g.op("Concat", i64([1]), batch, i64([1]), axis=0))
    gb = g.op("Reshape", gb, i64([-1, 2 * ch, 1, 1]))  # [K*b, 2ch, 1, 1]
    gamma = g.op("Slice", gb, i64([0]), i64([ch]), i64([1]))
    beta = g.op("Slice", gb, i64([ch]), i64([2 * ch]), i64([1]))
    return g.op("Add", g.op("Mul", x, g.op("Add", gamma, g.const(np.float32(1.0)))), beta)


def _time_rnn(g: _Graph, layer, x: str) -> str:
    """:class:`vsep.unet.TimeRNN` on NCHW ``x [N, C, T, F]``: ONNX's bidirectional GRU along ``T``, one
    sequence per ``(N, F)`` row (Keras' ``reset_after`` GRU is ONNX's ``linear_before_reset``; both take the
    gates in the order z, r, h), its ``[fw, bw]`` outputs projected back to ``C`` and added to ``x``."""
    i64 = lambda v: g.const(np.asarray(v, np.int64), "shape")  # noqa: E731
    fw, bw = layer.rnn.forward_layer.cell, layer.rnn.backward_layer.cell
    units = layer.units
    w = np.stack([np.asarray(c.kernel).T for c in (fw, bw)]).astype(np.float32)  # [2, 3U, C]
    r = np.stack([np.asarray(c.recurrent_kernel).T for c in (fw, bw)]).astype(np.float32)  # [2, 3U, U]
    bias = np.stack([np.asarray(c.bias).reshape(-1) for c in (fw, bw)]).astype(np.float32)  # [2, 6U]: Wb, Rb
    kernel, pb = (np.asarray(v, np.float32) for v in layer.proj.get_weights())  # [2U, C], [C]
    rows = g.op("Transpose", x, perm=[2, 0, 3, 1])  # [T, N, F, C]
    seq_shape = g.op("Concat", g.op("Shape", rows, end=1), i64([-1]), g.op("Shape", rows, start=3), axis=0)
    seq = g.op("Reshape", rows, seq_shape)  # [T, N*F, C]
    y = g.op("GRU", seq, g.const(w), g.const(r), g.const(bias), direction="bidirectional",
             hidden_size=units, linear_before_reset=1)  # [T, 2, N*F, U]
    y = g.op("Transpose", y, perm=[0, 2, 1, 3])  # [T, N*F, 2, U]: forward then backward, as Keras concatenates
    y = g.op("Reshape", y, g.op("Concat", g.op("Shape", seq, end=2), i64([2 * units]), axis=0))
    y = g.op("Add", g.op("MatMul", y, g.const(kernel)), g.const(pb))  # [T, N*F, C]
    y = g.op("Reshape", y, g.op("Shape", rows))  # [T, N, F, C]
    return g.op("Add", x, g.op("Transpose", y, perm=[1, 3, 0, 2]))


def _unet(g: _Graph, unet, cfg, x: str, film: tuple[str, str] | None = None) -> str:
    """U-Net on NCHW ``x`` ``[b, 1, T, F]`` (log magnitudes) -> sigmoid masks ``[b, 2, T, F]``.

    ``film``: ``(embeddings [K, D], [b])`` for a speaker-conditioned model, whose ``x`` is ``[K*b, 1, T, F]``.
    """
    scale, shift = _fold_bn(unet.get_layer("input_norm"))  # per frequency bin (axis 2 of NHWC = F)
    x = g.op("Add", g.op("Mul", x, g.const(scale.astype(np.float32).reshape(1, 1, 1, -1))),
             g.const(shift.astype(np.float32).reshape(1, 1, 1, -1)))
    b, e = _same_pads(cfg.kernel_size, 2)
    skips = []
    for i in range(cfg.depth):
        kernel, bias = unet.get_layer(f"enc{i}_conv").get_weights()
        scale, shift = _fold_bn(unet.get_layer(f"enc{i}_bn"))
        w = (kernel.transpose(3, 2, 0, 1) * scale[:, None, None, None]).astype(np.float32)  # [out, in, kh, kw]
        x = g.op("Conv", x, g.const(w), g.const((bias * scale + shift).astype(np.float32)),
                 strides=[2, 2], pads=[b, b, e, e], kernel_shape=[cfg.kernel_size] * 2)
        x = g.op("LeakyRelu", x, alpha=0.2)
        if film:
            x = _film(g, unet.get_layer(f"enc{i}_film"), x, *film)
        skips.append(x)
    if cfg.time_rnn:
        x = _time_rnn(g, unet.get_layer("bottleneck_rnn"), x)
    for j, i in enumerate(reversed(range(cfg.depth))):
        if j > 0:
            x = g.op("Concat", x, skips[i], axis=1)
        kernel, bias = unet.get_layer(f"dec{i}_deconv").get_weights()  # [kh, kw, out, in]
        if i > 0:
            scale, shift = _fold_bn(unet.get_layer(f"dec{i}_bn"))
            kernel, bias = kernel * scale[None, None, :, None], bias * scale + shift
        w, wb, pads = _subpixel(kernel, bias, cfg.kernel_size)
        x = g.op("Conv", x, g.const(w), g.const(wb), pads=pads, kernel_shape=list(w.shape[2:]))
        if i > 0:  # before the rearrangement (elementwise, so the same): the 8-bit graph fuses it into the conv
            x = g.op("Relu", x)
        x = g.op("DepthToSpace", x, blocksize=2, mode="CRD")
        if film and i > 0 and cfg.film_decoder:
            x = _film(g, unet.get_layer(f"dec{i}_film"), x, *film)
        if cfg.time_rnn and j + 1 < cfg.time_rnn_levels:
            x = _time_rnn(g, unet.get_layer(f"dec{i}_rnn"), x)
    return g.op("Sigmoid", x)


def _synthesis(g: _Graph, est: str, bases: tuple[str, str, str, str], cfg, frames: int, length: int) -> str:
    """Masked spectra ``[..., T, 2F]`` -> waveforms ``[N, L]``: inverse STFT, overlap-add, padding cut off."""
    i64 = lambda v: g.const(np.asarray(v, np.int64), "shape")  # noqa: E731
    step, ratio, nbins = cfg.frame_step, cfg.frame_length // cfg.frame_step, cfg.fft_length // 2 + 1
    pad = cfg.frame_length - cfg.frame_step
    out = half_istft(g, g.op("Reshape", est, i64([-1, frames, 2 * nbins])), bases, cfg.fft_length)  # [N, T, frame]
    out = g.op("Reshape", out, i64([-1, frames, ratio, step]))
    parts = [g.op("Pad", g.op("Reshape", g.op("Slice", out, i64([j]), i64([j + 1]), i64([2])), i64([-1, frames, step])),
                  i64([0, j, 0, 0, ratio - 1 - j, 0])) for j in range(ratio)]  # overlap-add: frame t at hop t + j
    wave = parts[0]
    for part in parts[1:]:
        wave = g.op("Add", wave, part)
    wave = g.op("Reshape", wave, i64([-1, (frames + ratio - 1) * step]))
    return g.op("Slice", wave, i64([pad]), i64([pad + length]), i64([1]))


def _target_and_rest(g: _Graph, masks: str, spec: str, rows: str, settings: tuple[str, str],
                     bases: tuple[str, str, str, str], cfg, frames: int, length: int) -> str:
    """:meth:`vsep.model.SeparationModel.target_and_rest`: masks ``[b, 2, T, F]``, spectra ``[b, C, T, 2F]``,
    ``rows [b, C, L]`` -> ``[b, 2, C, L]`` with one inverse STFT: ``y = istft(g * spec)``, ``g`` the target's
    mask before the floor (its ratio mask where ``wiener`` is 1), target ``y + a (rows - y)`` with
    ``a = floor (1 - wiener)``, rest ``rows - y``."""
    from vsep.model import EPS

    floor, wiener = settings
    i64 = lambda v: g.const(np.asarray(v, np.int64), "shape")  # noqa: E731
    one = g.const(np.float32(1.0))
    m_t = g.op("Slice", masks, i64([0]), i64([1]), i64([1]))  # [b, 1, T, F]
    m_r = g.op("Slice", masks, i64([1]), i64([2]), i64([1]))
    lifted = g.op("Add", floor, g.op("Mul", g.op("Sub", one, floor), m_t))
    p_t = g.op("Mul", lifted, lifted)
    ratio_t = g.op("Div", p_t, g.op("Add", g.op("Add", p_t, g.op("Mul", m_r, m_r)), g.const(np.float32(EPS))))
    gain = g.op("Add", g.op("Mul", wiener, ratio_t), g.op("Mul", g.op("Sub", one, wiener), m_t))
    est = g.op("Mul", spec, g.op("Concat", gain, gain, axis=3))  # [b, C, T, 2F]
    y = g.op("Reshape", _synthesis(g, est, bases, cfg, frames, length), g.op("Shape", rows))  # [b, C, L]
    rest = g.op("Sub", rows, y)
    target = g.op("Add", y, g.op("Mul", g.op("Mul", floor, g.op("Sub", one, wiener)), rest))
    return g.op("Concat", g.op("Unsqueeze", target, i64([1])), g.op("Unsqueeze", rest, i64([1])), axis=1)


def build(model) -> bytes:
    """The serialised ONNX graph of ``model`` (a :class:`vsep.model.SeparationModel`) on one chunk."""
    from onnx import TensorProto, checker, helper

    from vsep.inference import chunk_geometry
    from vsep.model import EPS, LEVEL_FLOOR
    from vsep.stft import num_frames

    cfg = model.cfg
    length, _ = chunk_geometry(cfg)
    frames = num_frames(cfg, length)
    if frames % 2**cfg.depth:
        raise ValueError(f"chunk of {frames} frames is not a multiple of 2**depth; the ONNX graph needs no padding")
    if cfg.frame_length % cfg.frame_step or cfg.fft_length != cfg.frame_length:
        raise ValueError("the ONNX graph needs frame_length = fft_length, a multiple of frame_step")
    bins, nbins = cfg.bins, cfg.fft_length // 2 + 1
    pad = cfg.frame_length - cfg.frame_step
    padded = (frames - 1) * cfg.frame_step + cfg.frame_length  # STFT's padding plus pad_end's zeros
    g = _Graph()
    i64 = lambda v: g.const(np.asarray(v, np.int64), "shape")  # noqa: E731
    rows, floor, wiener = "rows", "floor", "wiener"
    shape = g.op("Shape", rows)
    batch_ch = g.op("Shape", rows, end=2)  # [b, C]
    step, ratio = cfg.frame_step, cfg.frame_length // cfg.frame_step
    flat = g.op("Reshape", rows, i64([-1, length]))  # [bC, L]
    flat = g.op("Pad", flat, i64([0, pad, 0, padded - length - pad]), hint="pad")
    hops = g.op("Reshape", flat, i64([-1, frames + ratio - 1, step]))  # [bC, T + r - 1, step]
    framed = g.op("Concat", *[g.op("Slice", hops, i64([j]), i64([j + frames]), i64([1])) for j in range(ratio)],
                  axis=2)  # [bC, T, frame_length]
    bases = half_bases(g, cfg)
    spec = half_stft(g, framed, bases, cfg.fft_length)  # [bC, T, 2F]
    spec = g.op("Reshape", spec, g.op("Concat", batch_ch, i64([frames, 2 * nbins]), axis=0))  # [b, C, T, 2F]
    mix = g.op("ReduceMean", spec, i64([1]), keepdims=0)  # [b, T, 2F]: the STFT of the downmix
    re = g.op("Slice", mix, i64([0]), i64([bins]), i64([2]))
    im = g.op("Slice", mix, i64([nbins]), i64([nbins + bins]), i64([2]))
    mag = g.op("Sqrt", g.op("Add", g.op("Add", g.op("Mul", re, re), g.op("Mul", im, im)), g.const(np.float32(1e-12))))
    if cfg.input_norm == "mean":
        level = g.op("ReduceMean", mag, i64([1, 2]), keepdims=1)
        mag = g.op("Div", mag, g.op("Add", level, g.const(np.float32(LEVEL_FLOOR))))
    logmag = g.op("Log", g.op("Add", mag, g.const(np.float32(1.0))))  # log1p
    x = g.op("Unsqueeze", logmag, i64([1]))  # [b, 1, T, F]
    cond = bool(cfg.embed_dim)
    if cond:  # one U-Net pass per voice: [K*b, 1, T, F], voice-major
        voices, batch = g.op("Shape", "embeddings", end=1), g.op("Shape", rows, end=1)
        x = g.op("Tile", x, g.op("Concat", voices, i64([1, 1, 1]), axis=0))
    g.scope = UNET_SCOPE
    masks = _unet(g, model.unet, cfg, x, ("embeddings", batch) if cond else None)
    g.scope = ""  # [(K)b, 2, T, bins]
    masks = g.op("Concat", masks, g.op("Slice", masks, i64([bins - 1]), i64([bins]), i64([3])), axis=3)  # Nyquist
    if cond:  # SeparationModel.speaker_masks: each voice's target, then the least of their rest masks
        per_voice = g.op("Reshape", masks, g.op("Concat", voices, batch, i64([2, frames, nbins]), axis=0))
        target = g.op("Transpose", g.op("Squeeze", g.op("Slice", per_voice, i64([0]), i64([1]), i64([2])), i64([2])),
                      perm=[1, 0, 2, 3])  # [b, K, T, F]
        rest = g.op("ReduceMin", g.op("Slice", per_voice, i64([1]), i64([2]), i64([2])), i64([0]), keepdims=0)
        one = g.const(np.float32(1.0))
        target = g.op("Add", floor, g.op("Mul", g.op("Sub", one, floor), target))
        masks = g.op("Concat", target, rest, axis=1)
        power = g.op("Mul", masks, masks)
        ratio_m = g.op("Div", power, g.op("Add", g.op("ReduceSum", power, i64([1]), keepdims=1),
                                          g.const(np.float32(EPS))))
        masks = g.op("Add", g.op("Mul", wiener, ratio_m), g.op("Mul", g.op("Sub", one, wiener), masks))
        masks = g.op("Unsqueeze", g.op("Concat", masks, masks, axis=3), i64([2]))  # re and im: [b, K+1, 1, T, 2F]
        est = g.op("Mul", g.op("Unsqueeze", spec, i64([1])), masks)  # [b, K+1, C, T, 2F]
        wave = _synthesis(g, est, bases, cfg, frames, length)  # [(K+1)bC, L]
    else:
        wave = _target_and_rest(g, masks, spec, rows, (floor, wiener), bases, cfg, frames, length)
    sources = g.op("Add", voices, i64([1])) if cond else i64([2])
    out_shape = g.op("Concat", g.op("Slice", shape, i64([0]), i64([1])), sources,
                     g.op("Slice", shape, i64([1]), i64([3])), axis=0)
    g.nodes.append(helper.make_node("Reshape", [wave, out_shape], ["sources"]))
    inputs = [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["b", "C", length]),
              helper.make_tensor_value_info("floor", TensorProto.FLOAT, []),
              helper.make_tensor_value_info("wiener", TensorProto.FLOAT, [])]
    if cond:
        inputs.append(helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["K", cfg.embed_dim]))
    graph = helper.make_graph(
        g.nodes, "vsep_chunk", inputs,
        [helper.make_tensor_value_info("sources", TensorProto.FLOAT, ["b", "K + 1" if cond else 2, "C", length])],
        initializer=g.inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="vsep")
    proto.ir_version = 8  # readable by onnxruntime >= 1.10
    checker.check_model(proto)
    return proto.SerializeToString()


def write(model, model_dir: str | Path, weights: str | Path | None = None) -> Path:
    """Write ``model_dir/model.onnx`` for ``model`` (and for a conditioned model its speaker encoder:
    ``speaker.onnx``, or ``ge2e.npz`` for GE2E), stamped with the digest of ``weights`` (default: ``model_dir/model.weights.h5``)."""
    import onnx

    from vsep import onnx_speaker
    from vsep.model_io import WEIGHTS

    digest = weights_digest(weights or Path(model_dir) / WEIGHTS)
    graphs = [(ONNX, build(model))]
    if model.cfg.embed_dim and model.cfg.speaker_encoder == "learned":
        graphs.append((onnx_speaker.SPEAKER_ONNX, onnx_speaker.build(model)))
    elif model.cfg.embed_dim:  # GE2E: NumPy embeds the clips (vsep.ge2e_np), from these weights
        from vsep import ge2e_np

        ge2e_np.write(model, model_dir, digest)
    for name, blob in reversed(graphs):  # model.onnx last: it is what marks the set as current
        proto = onnx.load_from_string(blob)
        onnx.helper.set_model_props(proto, {WEIGHTS_KEY: digest})
        path = Path(model_dir) / name
        tmp = path.with_suffix(".onnx.partial")
        tmp.write_bytes(proto.SerializeToString())
        tmp.replace(path)
    return Path(model_dir) / ONNX


def stamp(session) -> str | None:
    """The weights digest recorded in an onnxruntime ``session``'s graph (None if absent)."""
    return session.get_modelmeta().custom_metadata_map.get(WEIGHTS_KEY)
