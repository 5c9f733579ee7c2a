"""The one TFRecord schema: how a mixture example is written and parsed.

An example holds the mixture and each of its sources as float32 waveforms at
the data set's sample rate, ``[samples]`` each, with ``mixture == target +
other + noise`` (a source that is absent is zeros), plus ids, gains and the
split. Waveforms are stored as raw little-endian float32 bytes (fast to write
and to parse).

Writing needs no TensorFlow: :func:`encode` builds the ``tf.train.Example``
protocol buffer by hand (the format is small and stable), so Beam workers do
not import TensorFlow. :func:`parse` is the tf.data side; :func:`decode` reads
an example back in plain Python for tests and tools.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

WAVEFORMS = ("mixture", "target", "other", "noise")
STRINGS = ("example_id", "split", "kind", "target_speaker", "target_id", "other_id", "noise_id", "rir_id")
FLOATS = ("target_gain_db", "other_gain_db", "noise_gain_db", "scale_db", "tir_db", "snr_db")
INTS = ("sample_rate", "num_samples")
KINDS = ("speech", "noise", "both", "target", "other")


# ------------------------------------------------------------ writing


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 two's complement, as protobuf does
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _feature(value: Any) -> bytes:
    """A ``tf.train.Feature``: bytes_list=1, float_list=2, int64_list=3."""
    if isinstance(value, (bytes, str)):
        raw = value.encode("utf-8") if isinstance(value, str) else value
        return _field(1, _field(1, raw))
    if isinstance(value, float):
        return _field(2, _field(1, struct.pack("<f", value)))
    if isinstance(value, (int, np.integer)):
        return _field(3, _field(1, _varint(int(value))))
    raise TypeError(f"unsupported feature value {type(value).__name__}")


def encode(example: dict[str, Any]) -> bytes:
    """Serialise an example dict to ``tf.train.Example`` bytes.

    ``example`` has every key of the schema: waveforms as float arrays
    ``[samples]`` of one length, strings, floats and ints.
    """
    missing = [k for k in (*WAVEFORMS, *STRINGS, *FLOATS, *INTS) if k not in example]
    if missing:
        raise KeyError(f"example lacks {', '.join(missing)}")
    n = int(example["num_samples"])
    entries = []
    for key in WAVEFORMS:
        wav = np.asarray(example[key], dtype="<f4")
        if wav.shape != (n,):
            raise ValueError(f"{key} has shape {wav.shape}, expected ({n},)")
        entries.append((key, _feature(wav.tobytes())))
    entries += [(k, _feature(str(example[k]))) for k in STRINGS]
    entries += [(k, _feature(float(example[k]))) for k in FLOATS]
    entries += [(k, _feature(int(example[k]))) for k in INTS]
    features = b"".join(_field(1, _field(1, k.encode()) + _field(2, v)) for k, v in entries)
    return _field(1, features)


# ------------------------------------------------------------ reading


def feature_spec() -> dict[str, Any]:
    """``tf.io.parse_example`` spec of the schema."""
    import tensorflow as tf

    spec: dict[str, Any] = {k: tf.io.FixedLenFeature([], tf.string) for k in (*WAVEFORMS, *STRINGS)}
    spec.update({k: tf.io.FixedLenFeature([], tf.float32) for k in FLOATS})
    spec.update({k: tf.io.FixedLenFeature([], tf.int64) for k in INTS})
    return spec


def parse(serialized: Any) -> dict[str, Any]:
    """tf.data side: one serialized example to tensors (waveforms float32 ``[samples]``)."""
    import tensorflow as tf

    ex = tf.io.parse_single_example(serialized, feature_spec())
    for key in WAVEFORMS:
        ex[key] = tf.io.decode_raw(ex[key], tf.float32, little_endian=True)
    return ex


def decode(serialized: bytes) -> dict[str, Any]:
    """Plain-Python inverse of :func:`encode` (numpy waveforms, str, float, int)."""
    features = _fields(_only(_fields(serialized), 1))
    out: dict[str, Any] = {}
    for entry in features.get(1, []):
        kv = _fields(entry)
        key = _only(kv, 1).decode()
        feat = _fields(_only(kv, 2))
        if 1 in feat:
            raw = _only(_fields(feat[1][0]), 1)
            out[key] = np.frombuffer(raw, dtype="<f4").copy() if key in WAVEFORMS else raw.decode()
        elif 2 in feat:
            out[key] = struct.unpack("<f", _only(_fields(feat[2][0]), 1))[0]
        elif 3 in feat:
            val, _ = _read_varint(_only(_fields(feat[3][0]), 1), 0)
            out[key] = val - (1 << 64) if val >= 1 << 63 else val
    return out


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> dict[int, list[bytes]]:
    """Length-delimited fields of a message, by field number."""
    out: dict[int, list[bytes]] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        if key & 7 != 2:
            raise ValueError(f"unexpected wire type {key & 7}")
        size, pos = _read_varint(buf, pos)
        out.setdefault(key >> 3, []).append(buf[pos : pos + size])
        pos += size
    return out


def _only(fields: dict[int, list[bytes]], number: int) -> bytes:
    return fields[number][0]
