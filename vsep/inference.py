"""Inference outside the model: the one place where chunking and overlap-add live.

The model only ever sees fixed-size chunks of ``L = cfg.patch_samples(cfg.chunk_frames)``
samples. :func:`build_separate_fn` cuts a waveform into chunks every ``H``
samples (on a grid anchored at the start of the waveform), runs the model on
them in batches and overlap-adds the outputs with triangular weights
(normalised by the summed weights). Past the ends of the input the
chunks are filled with its mirror image, not silence (:func:`mirror_extend`).
It is a ``tf.function`` used by the TensorFlow runtime and the exported
SavedModel; :func:`build_chunked_fn` is the same procedure in NumPy around a
chunk model outside TensorFlow (the ONNX graph, :mod:`vsep.runtime`), tested
equal to it. With ``shifts > 1`` it combines that many passes
whose chunk grid and STFT frames are offset by a fraction of a hop
(test-time shift averaging, as in Demucs; :func:`shift_offsets`). One pass
hops ``H = 3L/4``; several passes hop ``H = L`` each and are overlap-added
together (one normalisation over all their chunks), so two passes cost two
model calls per chunk length of audio instead of 2.7, with every sample still
seen by two chunks on two STFT frame grids.

:func:`stream` runs that function over an arbitrarily long input in segments
with enough context (aligned to the chunk grid) that the result is the same as
processing the whole input at once, while memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from vsep.config import ModelConfig

HOP_SHARE = 0.75  # chunk hop / chunk length of a single pass
PASSES_HOP_SHARE = 1.0  # the same for each of several passes, whose chunks interleave


def chunk_geometry(cfg: ModelConfig, shifts: int = 1) -> tuple[int, int]:
    """``(chunk length L, chunk hop H)`` in samples of one of ``shifts`` passes; ``H`` is a
    multiple of the STFT hop."""
    length = cfg.patch_samples(cfg.chunk_frames)
    share = HOP_SHARE if shifts <= 1 else PASSES_HOP_SHARE
    hop = max(cfg.frame_step, int(share * length) // cfg.frame_step * cfg.frame_step)
    return length, hop


def ola_weights(length: int) -> np.ndarray:
    """Triangular overlap-add weights ``[length]``, strictly positive."""
    i = np.arange(length, dtype=np.float32)
    return (np.minimum(i + 1, length - i) / (length / 2)).astype(np.float32)


def mirror_extend(x, before, after):
    """``x`` ``[..., n]`` extended by ``before`` and ``after`` samples of its mirror image
    (``x``, reversed ``x``, ``x``, ... as often as needed) along the last axis -> ``[..., before + n + after]``.

    Chunks at the edges of an input, and inputs shorter than a chunk, are filled
    with real audio rather than digital silence, which the model never saw in
    training and which skews its level normalisation. The padded part of the
    output is discarded. An empty ``x`` is extended with zeros.
    """
    import tensorflow as tf

    n = tf.shape(x)[-1]
    lead = tf.shape(x)[:-1]
    cycle = tf.concat([x, tf.reverse(x, [-1]), tf.zeros(tf.concat([lead, [tf.maximum(0, 1 - n)]], 0))], -1)
    index = tf.math.floormod(tf.range(-before, n + after), tf.shape(cycle)[-1])
    return tf.gather(cycle, index, axis=-1)


def shift_offsets(cfg: ModelConfig, shifts: int) -> list[int]:
    """Left offsets in samples of the ``shifts`` passes: spread over one chunk hop, and
    (for ``shifts > 1``) off the STFT frame grid so that every pass sees other frames."""
    if shifts < 1:
        raise ValueError(f"shifts must be >= 1, got {shifts}")
    _, hop = chunk_geometry(cfg, shifts)
    step = cfg.frame_step
    # k/shifts of a chunk hop (on the frame grid) plus k/shifts of a frame hop (off it)
    return [(k * hop) // shifts // step * step + (k * step) // shifts for k in range(shifts)]


def build_separate_fn(model, batch_chunks: int = 2, wiener: bool = False, shifts: int = 1,
                      precision: str | None = None, channels: bool = False, target_floor: float = 0.0,
                      embeddings: np.ndarray | None = None) -> Callable:
    """A ``tf.function``: waveform ``[samples]`` at the model's rate -> ``[2, samples]``.

    A speaker-conditioned model takes ``embeddings [K, D]`` (one per voice) and
    returns ``[K + 1, samples]``: each voice, then the rest
    (:meth:`vsep.model.SeparationModel.separate_speakers`).

    ``shifts`` passes (see :func:`shift_offsets`) are overlap-added together; 1 is a single pass.
    ``precision`` runs the U-Net in that arithmetic (same weights; default: the model's own).
    ``channels``: the function takes ``[channels, samples]`` and returns
    ``[2, channels, samples]``, every channel shaped by the masks of the downmix.
    ``target_floor``: the least share of the mixture the target mask keeps
    (:meth:`vsep.model.SeparationModel.target_and_rest`; the rest is the input minus the unfloored target).
    """
    import tensorflow as tf

    if precision is not None:
        from vsep.model_io import with_precision

        model = with_precision(model, precision)  # the model itself when it already computes so
    cfg: ModelConfig = model.cfg
    length, hop = chunk_geometry(cfg, shifts)
    weights = tf.constant(ola_weights(length))
    offsets = shift_offsets(cfg, shifts)
    # a variable, so that a benchmark can enroll other voices of the same count without retracing
    voices = None if embeddings is None else tf.Variable(np.asarray(embeddings, np.float32), trainable=False)
    spec = tf.TensorSpec([None, None, length], tf.float32)

    # the model on a batch of chunks, traced once and called by every pass (tracing it per pass
    # doubled the start-up of a short file); ``[b, R, L]`` (row 0 the downmix, rows 1.. the channels,
    # or one row) -> ``[b, S, R', L]``
    if voices is None:
        @tf.function(input_signature=[spec], reduce_retracing=True)
        def run(chunks):
            if not channels:
                return model(chunks[:, 0], training=False, wiener=wiener, floor=target_floor)[:, :, None]
            return model.separate_channels(chunks[:, 0], chunks[:, 1:], wiener=wiener, floor=target_floor)
    else:
        @tf.function(input_signature=[spec, tf.TensorSpec(voices.shape, tf.float32)], reduce_retracing=True)
        def run(chunks, v):
            rows = chunks[:, 1:] if channels else chunks[:, :1]
            return model.separate_speakers(chunks[:, 0], rows, v, wiener=wiener, floor=target_floor)

    def one_pass(rows, offset: int, v):
        """One pass over ``rows [R, n]`` whose chunk grid starts ``offset`` samples before them:
        its weighted sum ``[S, R', n]`` and summed weights ``[n]``."""
        n = tf.shape(rows)[-1]
        chunks_needed = tf.maximum(1, 1 + (n + offset - length + hop - 1) // hop)
        total = (chunks_needed - 1) * hop + length
        padded = mirror_extend(rows, offset, total - n - offset)
        chunks = tf.transpose(tf.signal.frame(padded, length, hop), [1, 0, 2])  # [C, R, L]
        count = tf.shape(chunks)[0]
        outputs = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)
        for start in tf.range(0, count, batch_chunks):
            batch = chunks[start : start + batch_chunks]
            outputs = outputs.write(start // batch_chunks, run(batch) if v is None else run(batch, v))
        per_chunk = outputs.concat()  # [C, S, R', L]
        weighted = tf.transpose(per_chunk, [1, 2, 0, 3]) * weights  # [S, R', C, L]
        summed = tf.signal.overlap_and_add(weighted, hop)
        norm = tf.signal.overlap_and_add(tf.tile(weights[None], [count, 1]), hop)
        return summed[..., offset : offset + n], norm[offset : offset + n]

    def average(rows, v):
        total, norm = 0.0, 0.0
        for offset in offsets:  # a Python loop: one pass each in the graph
            summed, weight = one_pass(rows, offset, v)
            total, norm = total + summed, norm + weight
        return total / norm

    def downmix_and(waveform):
        return tf.concat([tf.reduce_mean(waveform, axis=0, keepdims=True), waveform], 0)

    shape = [None, None] if channels else [None]
    prepare = downmix_and if channels else (lambda w: w[None])
    finish = (lambda out: out) if channels else (lambda out: out[:, 0])

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)], reduce_retracing=True)
    def separate(waveform):
        return finish(average(prepare(waveform), voices))

    separate.voices = voices  # ``[K, D]`` embeddings of a conditioned model (``assign`` others), else None
    if voices is not None:  # the same with the embeddings as an argument (the SavedModel's enrolled signature)
        @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32), tf.TensorSpec(voices.shape, tf.float32)])
        def enrolled(waveform, v):
            return finish(average(prepare(waveform), v))

        separate.enrolled = enrolled
    separate.hop = hop  # the chunk grid :func:`stream` aligns its segments to
    return separate


def mirror_extend_np(x: np.ndarray, before: int, after: int, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`mirror_extend` in NumPy: ``[..., n]`` -> ``[..., before + n + after]`` (into ``out`` if given)."""
    n = x.shape[-1]
    if n == 0:
        out = np.empty((*x.shape[:-1], before + after), np.float32) if out is None else out
        out.fill(0.0)
        return out
    def edge(index: np.ndarray) -> np.ndarray:  # the cycle x, reversed x, x, ... at these positions
        index = index % (2 * n)
        return x[..., np.where(index < n, index, 2 * n - 1 - index)]

    return np.concatenate([edge(np.arange(-before, 0)), x, edge(np.arange(n, n + after))], axis=-1, out=out)


def build_chunked_fn(call: Callable[[np.ndarray], np.ndarray], cfg: ModelConfig, shifts: int = 1,
                     batch_chunks: int = 1, channels: bool = False, workers: int = 1) -> Callable:
    """:func:`build_separate_fn` for a chunk model outside TensorFlow (the ONNX runtime).

    ``call``: chunks ``[b, C, L]`` -> sources ``[b, S, C, L]`` (masks from the mean of the ``C`` rows; ``S = 2``,
    or each voice and the rest for a conditioned model).
    The same chunk grid, mirror padding, triangular overlap-add and shift
    offsets as the TensorFlow graph; returns ``[samples]`` -> ``[2, samples]``, or with
    ``channels`` ``[channels, samples]`` -> ``[2, channels, samples]``. ``workers`` batches are
    run at once on threads (``call`` must be thread-safe; onnxruntime sessions are): on two
    cores, two single-threaded calls side by side do more than one call on two threads.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(workers, thread_name_prefix="vsep-model") if workers > 1 else None
    length, hop = chunk_geometry(cfg, shifts)
    weights = ola_weights(length)
    overlap = max(0, length - hop)  # samples a chunk shares with the previous one
    offsets = shift_offsets(cfg, shifts)
    norms: dict[int, np.ndarray] = {}

    def ola_norm(count: int) -> np.ndarray:
        """``[(count - 1) * hop + length]``: the summed weights of ``count`` chunks (the same for every pass)."""
        if count not in norms:
            if len(norms) > 8:  # inputs of many lengths: keep the cache small
                norms.clear()
            norm = np.zeros((count - 1) * hop + length, np.float32)
            for i in range(count):
                norm[i * hop : i * hop + length] += weights
            norms[count] = norm
        return norms[count]

    scratch = threading.local()  # per calling thread: buffers reused from one segment to the next

    def buffer(key: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of ``shape`` that stays allocated between calls (fresh pages cost a fault each)."""
        size = int(np.prod(shape))
        flat = getattr(scratch, key, None)
        if flat is None or flat.size < size:
            flat = np.empty(size + size // 8, np.float32)
            setattr(scratch, key, flat)
        return flat[:size].reshape(shape)

    class Pass:
        """One pass over ``rows [C, n]`` whose chunk grid starts ``offset`` samples before them."""

        def __init__(self, rows: np.ndarray, offset: int, k: int) -> None:
            self.n, self.offset, self.key = rows.shape[-1], offset, f"pass{k}"
            count = max(1, 1 + (self.n + offset - length + hop - 1) // hop)
            self.total = (count - 1) * hop + length
            self.padded = mirror_extend_np(rows, offset, self.total - self.n - offset,
                                           out=buffer(self.key + "in", (rows.shape[0], self.total)))
            self.batches = [range(s, min(count, s + batch_chunks)) for s in range(0, count, batch_chunks)]
            self.out = None  # [S, C, total]: as many sources as the model returns
            self.norm = ola_norm(count)

        def run(self, idx: range) -> np.ndarray:
            res = call(np.stack([self.padded[:, i * hop : i * hop + length] for i in idx]))  # [b, S, C, L]
            res *= weights
            return res

        def add(self, idx: range, res: np.ndarray) -> None:
            """Overlap-add chunks ``idx`` (called in chunk order): the part a chunk shares with the
            previous one is added, the rest assigned (no zero-filled buffer to add into)."""
            if self.out is None:
                self.out = buffer(self.key + "out", (res.shape[1], self.padded.shape[0], self.total))
            for j, i in enumerate(idx):
                shared = 0 if i == 0 else overlap
                self.out[..., i * hop : i * hop + shared] += res[j, ..., :shared]
                self.out[..., i * hop + shared : i * hop + length] = res[j, ..., shared:]

        def result(self) -> np.ndarray:
            """``[S, C, n]`` weighted sums, a view of this pass's buffer (valid until the next call)."""
            return self.out[..., self.offset : self.offset + self.n]

        def weight(self) -> np.ndarray:
            """``[n]``: the summed weights behind :meth:`result`."""
            return self.norm[self.offset : self.offset + self.n]

    def separate(waveform: np.ndarray) -> np.ndarray:
        rows = np.asarray(waveform, np.float32)
        rows = rows if channels else rows[None]
        passes = [Pass(rows, offset, k) for k, offset in enumerate(offsets)]
        tasks = [(p, idx) for p in passes for idx in p.batches]  # every pass's chunks in one queue: no barrier
        results = pool.map(lambda t: t[0].run(t[1]), tasks) if pool else (p.run(idx) for p, idx in tasks)
        for (p, idx), res in zip(tasks, results):
            p.add(idx, res)
        first = passes[0].result()
        if len(passes) == 1:
            total = np.divide(first, passes[0].weight())  # a fresh array
        else:
            total, norm = np.add(first, passes[1].result()), passes[0].weight() + passes[1].weight()
            for p in passes[2:]:
                total += p.result()
                norm += p.weight()
            total /= norm
        return total if channels else total[:, 0]

    separate.hop = hop  # the chunk grid :func:`stream` aligns its segments to
    return separate


def stream(
    blocks: Iterable[np.ndarray],
    separate: Callable,
    cfg: ModelConfig,
    segment_chunks: int = 48,
) -> Iterator[np.ndarray]:
    """Separate a long input given as blocks of mono samples at the model's rate.

    Yields ``[2, k]`` arrays whose concatenation equals ``separate(whole input)``.
    Segments of ``segment_chunks`` chunk hops are processed with one chunk of
    context on each side, on the same chunk grid as the whole input. Blocks
    may also be ``[channels, k]`` (for a ``channels`` function): then the
    pieces are ``[2, channels, k]``.
    """
    length, hop = chunk_geometry(cfg)
    hop = getattr(separate, "hop", hop)  # the grid of the function's passes
    segment = segment_chunks * hop
    context = -(-length // hop) * hop  # >= L, a multiple of H: same grid, full coverage
    parts: list[np.ndarray] = []  # the input from buf_start on, joined only when a segment is due
    held = 0  # samples in parts
    buf_start = 0  # input index of parts[0][..., 0]
    done = 0  # outputs emitted so far
    for block in blocks:
        parts.append(np.asarray(block, dtype=np.float32))
        held += parts[-1].shape[-1]
        if buf_start + held < done + segment + context:
            continue
        buf = np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
        while buf_start + buf.shape[-1] >= done + segment + context:
            yield _segment(separate, buf, buf_start, done, done + segment, context, final=False)
            done += segment
            keep_from = max(0, done - context) - buf_start
            buf, buf_start = buf[..., keep_from:], buf_start + keep_from
        parts, held = [buf], buf.shape[-1]
    buf = np.concatenate(parts, axis=-1) if parts else np.zeros(0, dtype=np.float32)
    end = buf_start + buf.shape[-1]
    if end > done or done == 0:
        yield _segment(separate, buf, buf_start, done, end, context, final=True)


def _segment(separate, buf, buf_start, a, b, context, final):
    """Outputs for input samples ``[a, b)``, computed from ``[a - context, b + context)``."""
    lo = max(0, a - context)
    hi = buf.shape[-1] + buf_start if final else b + context
    x = buf[..., lo - buf_start : hi - buf_start]
    out = np.asarray(separate(np.asarray(x, dtype=np.float32)))  # a view: the chunker copies it once, padded
    return out[..., a - lo : b - lo]
