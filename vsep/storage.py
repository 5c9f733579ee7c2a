"""One place for file access by URI: local paths, ``gs://`` and ``http(s)://``.

Local and ``gs://`` go through Beam's ``FileSystems`` (the same code the Beam
jobs use, so a path that works in a job works here); ``http(s)://`` is
read-only through ``urllib`` with retries. Against a GCS emulator set
``STORAGE_EMULATOR_HOST`` (google-cloud-storage honours it).
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable


class StorageError(OSError):
    """A URI that cannot be read or written; the message is one line."""


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def is_remote(uri: str) -> bool:
    return is_http(uri) or "://" in uri


def join(base: str, *parts: str) -> str:
    """Join path parts with '/' for URIs and ``os.path.join`` for local paths."""
    if "://" in base:
        out = base.rstrip("/")
        for p in parts:
            out = out + "/" + p.strip("/")
        return out
    return os.path.join(base, *parts)


def _fs():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _raw():
    """Beam's 'no compression' flag: bytes in are bytes stored, even for ``*.gz`` names."""
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.UNCOMPRESSED


def read_bytes(uri: str, timeout_s: float = 60.0, retries: int = 3) -> bytes:
    """The whole content of ``uri``; raises :class:`StorageError` with one line."""
    if is_http(uri):
        return _http_get(uri, timeout_s, retries)
    if "://" not in uri:
        try:
            with open(uri, "rb") as f:
                return f.read()
        except OSError as e:
            raise StorageError(f"{uri}: {e.strerror or e}") from None
    try:
        with _fs().open(uri, compression_type=_raw()) as f:
            return f.read()
    except Exception as e:  # noqa: BLE001 - Beam wraps client errors variously
        raise StorageError(f"{uri}: {_one_line(e)}") from None


def _http_get(uri: str, timeout_s: float, retries: int) -> bytes:
    last: Exception | None = None
    for attempt in range(retries):
        try:
            req = urllib.request.Request(uri, headers={"User-Agent": "vsep"})
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            if e.code < 500:  # 4xx will not change on retry
                raise StorageError(f"{uri}: HTTP {e.code} {e.reason}") from None
            last = e
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            last = e
        time.sleep(0.5 * 2**attempt)
    raise StorageError(f"{uri}: {_one_line(last)}")


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` (parent folders are created for local paths).

    Local writes go to a temporary name and are renamed, so a reader never
    sees a half-written file.
    """
    if is_http(uri):
        raise StorageError(f"{uri}: cannot write to http(s)")
    if "://" not in uri:
        os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
        tmp = f"{uri}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, uri)
        return
    with _fs().create(uri, compression_type=_raw()) as f:
        f.write(data)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def exists(uri: str) -> bool:
    if is_http(uri):
        try:
            _http_get(uri, 10.0, 1)
            return True
        except StorageError:
            return False
    if "://" not in uri:
        return os.path.exists(uri)
    return _fs().exists(uri)


def glob(pattern: str) -> list[str]:
    """Paths matching a glob pattern (``*`` and ``?``), sorted."""
    if "://" not in pattern:
        import glob as _glob

        return sorted(_glob.glob(pattern))
    result = _fs().match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


def list_files(folder: str) -> list[str]:
    """Every file below ``folder`` (recursive), sorted."""
    if "://" not in folder:
        out = []
        for root, _dirs, files in os.walk(folder):
            out.extend(os.path.join(root, f) for f in files)
        return sorted(out)
    return glob(join(folder, "**"))


def delete(uris: Iterable[str]) -> None:
    """Delete files; missing files are ignored."""
    uris = [u for u in uris if exists(u)]
    if not uris:
        return
    if all("://" not in u for u in uris):
        for u in uris:
            os.remove(u)
        return
    _fs().delete(uris)


def rename(src: list[str], dst: list[str]) -> None:
    """Move files (``gs://`` renames are copy plus delete)."""
    for s, d in zip(src, dst):
        if "://" not in s:
            os.makedirs(os.path.dirname(os.path.abspath(d)), exist_ok=True)
            os.replace(s, d)
    remote = [(s, d) for s, d in zip(src, dst) if "://" in s]
    if remote:
        _fs().rename([s for s, _ in remote], [d for _, d in remote])


def _one_line(e: BaseException | None) -> str:
    text = str(e).strip() if e is not None else "unknown error"
    return (text.splitlines() or [type(e).__name__])[0][:300]
