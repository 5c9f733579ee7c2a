"""Convert the GE2E speaker encoder's weights bundled in the Resemblyzer wheel (``resemblyzer/pretrained.pt``,
a legacy-format PyTorch checkpoint) to a NumPy ``.npz``, without PyTorch.

    .venv/bin/pip download resemblyzer==0.1.4 --no-deps -d runs/wheels
    .venv/bin/python tools/ge2e_weights.py runs/wheels/Resemblyzer-0.1.4-py3-none-any.whl runs/ge2e.npz

The encoder (Wan et al. 2018, "Generalized end-to-end loss for speaker verification"; Resemblyzer, Apache
2.0) is a 3-layer LSTM (256 units) over 40-band mel power spectra (25 ms / 10 ms at 16 kHz), its last hidden
state through a 256 x 256 linear layer, a ReLU and L2 normalisation; :mod:`vsep.ge2e` runs it. The legacy
format is: pickled magic number, protocol, system info, the object (tensors as persistent storage ids), the
list of storage keys, then each storage as an 8-byte element count and its raw little-endian data.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict

import numpy as np

DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
          "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
          "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def read_legacy(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """``(object, {storage key: flat array})`` of a legacy (non-zip) PyTorch checkpoint."""
    f = io.BytesIO(data)
    kinds: dict[str, str] = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch._utils" and name == "_rebuild_tensor_v2":
                return lambda storage, offset, size, stride, *_: _Tensor(storage, offset, size, stride)
            if module == "torch" and name.endswith("Storage"):
                return name
            if module == "collections" and name == "OrderedDict":
                return OrderedDict
            raise pickle.UnpicklingError(f"unexpected class {module}.{name} in the checkpoint")

        def persistent_load(self, pid):
            _, kind, key, _, _ = pid[:5]
            kinds[key] = kind
            return key

    for _ in range(3):  # magic number, protocol version, system info
        pickle.load(f)
    obj = Unpickler(f).load()
    keys = pickle.load(f)
    storages = {}
    for key in keys:
        count = struct.unpack("<q", f.read(8))[0]
        dtype = np.dtype(DTYPES[kinds[key]])
        storages[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)
    return obj, storages


def tensor(t: _Tensor, storages: dict[str, np.ndarray]) -> np.ndarray:
    flat = storages[t.storage]
    item = flat.itemsize
    return np.lib.stride_tricks.as_strided(flat[t.offset :], shape=t.size,
                                           strides=[s * item for s in t.stride]).copy()


def convert(wheel_or_pt: str, output: str) -> list[str]:
    """Write the encoder's ``lstm.*`` and ``linear.*`` arrays to ``output`` (``.npz``); returns their names."""
    if wheel_or_pt.endswith(".whl"):
        with zipfile.ZipFile(wheel_or_pt) as z:
            data = z.read("resemblyzer/pretrained.pt")
    else:
        with open(wheel_or_pt, "rb") as fh:
            data = fh.read()
    obj, storages = read_legacy(data)
    state = obj["model_state"]
    arrays = {k.replace(".", "/"): tensor(v, storages) for k, v in state.items() if k.startswith(("lstm.", "linear."))}
    np.savez(output, **arrays)
    return sorted(arrays)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: ge2e_weights.py RESEMBLYZER_WHEEL_OR_PT OUTPUT.npz", file=sys.stderr)
        return 2
    try:
        names = convert(*argv)
    except (OSError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        print(f"ge2e_weights: error: {argv[0]}: {e}", file=sys.stderr)
        return 2
    print(f"{argv[1]}: {len(names)} arrays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
