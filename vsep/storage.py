"""One place for file access by URI: local paths, ``gs://`` and ``http(s)://``.

Local and ``gs://`` go through Beam's ``FileSystems`` (the same code the Beam
jobs use, so a path that works in a job works here); ``http(s)://`` is
read-only through ``urllib`` with retries. Against a GCS emulator set
``STORAGE_EMULATOR_HOST`` (google-cloud-storage honours it).

Code that must write or read a local file (h5 weights, WAV writers, the HTML
report) goes through :func:`local_folder` and :func:`local_file`, so every
user-given path may be local or ``gs://`` without checks scattered elsewhere.
Errors from the storage clients come out as :class:`StorageError` (one line),
and a path in a bucket that does not exist says so.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


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
    """Beam's ``FileSystems``, for remote URIs only (credentials are checked first)."""
    check_credentials()
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


_CREDENTIALS_FOUND = False
CREDENTIALS_HELP = (
    "run 'gcloud auth application-default login', or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"
)


def check_credentials() -> None:
    """:class:`StorageError` (one line) if no Google Cloud credentials can be found.

    Runs once per process, before the first remote access, and needs no
    network for a key file or a gcloud login (on a GCE/Dataflow VM it asks
    the metadata server). Without it Beam silently falls back to anonymous
    access, and a job fails far later with a permission error, or, worse,
    half-written output.
    """
    global _CREDENTIALS_FOUND
    if _CREDENTIALS_FOUND:
        return
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError as e:
        raise StorageError(f"no usable Google Cloud credentials ({_one_line(e)}): {CREDENTIALS_HELP}") from None
    _CREDENTIALS_FOUND = True


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
    try:
        with _fs().create(uri, compression_type=_raw()) as f:
            f.write(data)
    except Exception as e:  # noqa: BLE001 - Beam wraps client errors variously
        raise StorageError(f"{uri}: {_one_line(e)}") from None


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
    try:
        if _fs().exists(uri):
            return True
    except Exception as e:  # noqa: BLE001
        raise StorageError(f"{uri}: {_one_line(e)}") from None
    _check_bucket(uri)
    return False


_BUCKETS_FOUND: set[str] = set()


def _check_bucket(uri: str) -> None:
    """:class:`StorageError` if the bucket of a ``gs://`` URI does not exist (found buckets are remembered)."""
    if not uri.startswith("gs://"):
        return
    bucket = uri[len("gs://") :].split("/", 1)[0]
    if bucket in _BUCKETS_FOUND:
        return
    from apache_beam.io.gcp.gcsio import GcsIO

    try:
        found = GcsIO().get_bucket(bucket) is not None
    except Exception:  # noqa: BLE001 - e.g. no permission to read bucket metadata: assume it exists
        found = True
    if not found:
        raise StorageError(f"gs://{bucket}: bucket does not exist")
    _BUCKETS_FOUND.add(bucket)


def preflight(*uris: str | None) -> None:
    """Before a command does any work: credentials and buckets of its ``gs://`` paths.

    Raises :class:`StorageError` with one line, so a job without credentials
    or with a mistyped bucket stops before it writes anything.
    """
    for uri in uris:
        if uri and str(uri).startswith("gs://"):
            check_credentials()
            _check_bucket(str(uri))


def glob(pattern: str) -> list[str]:
    """Paths matching a glob pattern (``*`` and ``?``), sorted."""
    if "://" not in pattern:
        import glob as _glob

        return sorted(_glob.glob(pattern))
    try:
        result = _fs().match([pattern])[0]
    except Exception as e:  # noqa: BLE001
        raise StorageError(f"{pattern}: {_one_line(e)}") from None
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


def copy(src: str, dst: str) -> None:
    """Copy one file; either side local or ``gs://`` (``src`` also http), streamed in blocks."""
    if is_http(src):
        write_bytes(dst, read_bytes(src))
        return
    try:
        with _open(src, "r") as fin, _open(dst, "w") as fout:
            shutil.copyfileobj(fin, fout, 8 << 20)
    except StorageError:
        raise
    except Exception as e:  # noqa: BLE001 - OSError locally, client errors remotely
        raise StorageError(f"{src} -> {dst}: {_one_line(e)}") from None


def open_read(uri: str):
    """A binary file object to read ``uri`` (local or ``gs://``), as a context manager."""
    return _open(uri, "r")


def open_write(uri: str):
    """A binary file object to write ``uri``; local files appear under their name only when complete."""
    return _open(uri, "w")


def size(uri: str) -> int:
    """Size of file ``uri`` in bytes (``FileNotFoundError`` when it does not exist)."""
    if "://" not in uri:
        return os.path.getsize(uri)
    try:
        found = _fs().match([uri])[0].metadata_list
    except Exception as e:  # noqa: BLE001
        raise StorageError(f"{uri}: {_one_line(e)}") from None
    if not found:
        raise FileNotFoundError(uri)
    return int(found[0].size_in_bytes)


@contextmanager
def _open(uri: str, mode: str):
    """A binary file object: read (``"r"``) or write (``"w"``, local: via a temp name)."""
    if "://" in uri:
        fs = _fs()
        with fs.open(uri, compression_type=_raw()) if mode == "r" else fs.create(uri, compression_type=_raw()) as f:
            yield f
        return
    if mode == "r":
        with open(uri, "rb") as f:
            yield f
        return
    os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
    tmp = f"{uri}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, uri)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def local_file(uri: str) -> Iterator[str]:
    """A local path with the content of file ``uri``: ``uri`` itself when local, else a
    temporary copy (same file name, removed afterwards)."""
    if "://" not in uri:
        yield uri
        return
    tmp = tempfile.mkdtemp(prefix="vsep-")
    try:
        path = os.path.join(tmp, uri.rstrip("/").rsplit("/", 1)[-1] or "file")
        copy(uri, path)
        yield path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def local_folder(uri: str) -> Iterator[str]:
    """A local folder to write the files that belong under folder ``uri``.

    Local ``uri``: the folder itself (created). ``gs://``: a temporary folder
    whose files are uploaded under ``uri`` (same relative paths) when the block
    ends without an exception; nothing is uploaded otherwise.
    """
    if "://" not in uri:
        os.makedirs(uri, exist_ok=True)
        yield uri
        return
    tmp = tempfile.mkdtemp(prefix="vsep-")
    try:
        yield tmp
        for path in list_files(tmp):
            copy(path, join(uri, os.path.relpath(path, tmp).replace(os.sep, "/")))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _one_line(e: BaseException | None) -> str:
    text = str(e).strip() if e is not None else "unknown error"
    return (text.splitlines() or [type(e).__name__])[0][:300]
