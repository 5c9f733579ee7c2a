"""A real GCS emulator for tests: ``gcp-storage-emulator`` in a subprocess.

``gcs_emulator()`` starts the emulator (a real HTTP server) on a free port of
127.0.0.1 with its data in a folder, so a test can stop and restart it and
find its objects again. While it runs, ``STORAGE_EMULATOR_HOST`` points at
it, which is all google-cloud-storage and Beam's ``gcsio`` (hence
``vsep.storage`` and Beam's ``gs://`` IO) need.

Credentials take the production path, offline: ``GOOGLE_APPLICATION_CREDENTIALS``
names a throwaway service-account key whose token endpoint is a local
:class:`TokenServer`, so Beam (which looks up Application Default Credentials
whenever google-auth-httplib2 is installed, and retries for ~20 s when there
are none) finds them at once and every request carries a bearer token
(the emulator accepts any). ``NO_GCE_CHECK=true`` and ``GOOGLE_CLOUD_PROJECT``
keep anything from asking a metadata server.

TensorFlow's own ``gs://`` filesystem has no endpoint setting: it always
talks HTTPS to ``www.googleapis.com`` and ``storage.googleapis.com``.
:meth:`GcsEmulator.tf_env` gives the environment that points it at the
emulator anyway, through :class:`GoogleApisProxy`, a local proxy that
terminates TLS with a throwaway certificate and relays to the emulator.
"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCALHOST = "127.0.0.1"
_NO_PROXY = "127.0.0.1,localhost"
_GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com")


# ``python -m gcp_storage_emulator`` with two fixes for the "folder/" objects
# TF's gs:// creates (empty ``uploadType=media`` uploads, in makedirs,
# checkpoints, SavedModel, TensorBoard): an empty body stores an empty object
# instead of failing on None, and a name ending in "/" is kept on disk as a
# file inside that folder, not as a file that blocks the folder (each failure
# left TF retrying for minutes).
_EMULATOR_MAIN = """
from gcp_storage_emulator import __main__ as cli
from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.storage import Storage
_media_upload, _object_path = objects._media_upload, Storage._object_path
def _empty_ok(request, *args, **kwargs):
    if request.data is None:
        request._data = b""
    return _media_upload(request, *args, **kwargs)
def _folder_object_path(self, bucket_name, file_name):
    if file_name.endswith("/"):
        file_name += ".folder-object"
    return _object_path(self, bucket_name, file_name)
objects._media_upload, Storage._object_path = _empty_ok, _folder_object_path
cli.main()
"""


class EmulatorError(RuntimeError):
    """The emulator did not start or answer in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def _http_status(url: str, timeout_s: float = 2.0) -> int | None:
    """HTTP status of GET ``url`` without any proxy; None if nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return None


class GcsEmulator:
    """One emulator process serving ``bucket`` from ``data_dir`` on ``port``.

    ``stop()`` ends the process and ``start()`` starts it again on the same
    port and folder, so objects written before a restart are still there.
    """

    def __init__(
        self,
        bucket: str,
        data_dir: Path,
        port: int | None = None,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self.bucket = bucket
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.startup_timeout_s = startup_timeout_s
        self.log_path = self.data_dir.parent / f"emulator-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._proxy: GoogleApisProxy | None = None
        self.token_server: TokenServer | None = None  # set by gcs_emulator()

    @property
    def host(self) -> str:
        """The value of ``STORAGE_EMULATOR_HOST``: ``http://127.0.0.1:PORT``."""
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def url(self) -> str:
        """The bucket as a URI: ``gs://BUCKET``."""
        return f"gs://{self.bucket}"

    def uri(self, *parts: str) -> str:
        """``gs://BUCKET/part/part``."""
        return "/".join([self.url, *(p.strip("/") for p in parts)])

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the emulator and wait until it serves the bucket."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-c", _EMULATOR_MAIN,
            "--data-dir", str(self.data_dir),
            "start", "--host", LOCALHOST, "--port", str(self.port),
            "--default-bucket", self.bucket, "--quiet",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self) -> None:
        probe = f"{self.host}/storage/v1/b/{self.bucket}"
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise EmulatorError(f"emulator exited with {self._proc.returncode}: {self._log_tail()}")
            if _http_status(probe) == 200:
                return
            time.sleep(0.1)
        self.stop()
        raise EmulatorError(f"emulator gave no answer on {self.host} in {self.startup_timeout_s}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """End the emulator process (SIGINT, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # in case it was frozen
        proc.send_signal(signal.SIGINT)  # the emulator shuts down on Ctrl-C
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def freeze(self) -> None:
        """Suspend the emulator (SIGSTOP): connections open, nothing answers, as in a network partition."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Resume a frozen emulator (SIGCONT); requests sent meanwhile are then answered."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def tf_env(self) -> dict[str, str]:
        """Environment for TensorFlow's built-in ``gs://`` filesystem.

        Starts a :class:`GoogleApisProxy` (once) that sends TF's HTTPS calls
        to the emulator. Set these before the first ``gs://`` access in the
        process that runs TF (best: a subprocess). Do not set
        ``TF_USE_MODULAR_FILESYSTEM=1``: tensorflow-io's ``gs`` plugin then
        replaces the built-in one, and it segfaults against the emulator.
        """
        if self._proxy is None:
            self._proxy = GoogleApisProxy(LOCALHOST, self.port, self.data_dir.parent / "tls")
        return {
            "https_proxy": self._proxy.url,  # libcurl reads the lower-case names
            "http_proxy": self._proxy.url,  # upload session URLs are http://
            # Those point at the emulator and need the proxy too (curl falls
            # back to NO_PROXY when no_proxy is empty, so clear both).
            "no_proxy": "",
            "NO_PROXY": "",
            "CURL_CA_BUNDLE": str(self._proxy.ca_file),
            "NO_GCE_CHECK": "true",
            # TF would fetch a token for the service-account key from www.googleapis.com
            # (the proxy sends that to the emulator); this token is used as is instead
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": TOKEN,
            "TF_USE_MODULAR_FILESYSTEM": "0",
        }

    def close(self) -> None:
        """Stop the emulator and the proxy, if any."""
        self.stop()
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None


@contextmanager
def gcs_emulator(bucket: str = "vsep-test", data_dir: str | Path | None = None) -> Iterator[GcsEmulator]:
    """Run a :class:`GcsEmulator` and point the GCS clients at it.

    Data lives in ``data_dir`` (default: a temporary folder, removed at the
    end). The environment is restored and the process killed on exit.
    """
    tmp: str | None = None
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="gcs-emulator-")
        data_dir = Path(tmp) / "data"
    emulator = GcsEmulator(bucket, Path(data_dir))
    saved = dict(os.environ)
    key_dir = tempfile.mkdtemp(prefix="gcs-emulator-key-")
    try:
        emulator.start()
        tokens = emulator.token_server = TokenServer()
        os.environ.update(
            {
                "GOOGLE_APPLICATION_CREDENTIALS": str(_service_account_file(Path(key_dir), tokens.url)),
                "STORAGE_EMULATOR_HOST": emulator.host,
                "GOOGLE_CLOUD_PROJECT": "vsep-test",
                "NO_GCE_CHECK": "true",
                "no_proxy": _join_no_proxy(os.environ.get("no_proxy")),
                "NO_PROXY": _join_no_proxy(os.environ.get("NO_PROXY")),
            }
        )
        yield emulator
    finally:
        emulator.close()
        if emulator.token_server is not None:
            emulator.token_server.close()
        os.environ.clear()
        os.environ.update(saved)
        for folder in (tmp, key_dir):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


TOKEN = "vsep-emulator-token"


class TokenServer:
    """A stand-in for Google's OAuth token endpoint on 127.0.0.1: every POST gets :data:`TOKEN`.

    ``requests`` counts the token requests (a client that authenticates makes at least one).
    """

    def __init__(self) -> None:
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests += 1
                body = json.dumps({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{LOCALHOST}:{self._server.server_address[1]}/token"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _service_account_file(folder: Path, token_uri: str) -> Path:
    """A service-account key file (a fresh RSA key) whose tokens come from ``token_uri``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "vsep-test",
        "private_key_id": "emulator",
        "private_key": pem,
        "client_email": "vsep-test@vsep-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    path = folder / "service-account.json"
    path.write_text(json.dumps(info))
    return path


def _join_no_proxy(current: str | None) -> str:
    return f"{current},{_NO_PROXY}" if current else _NO_PROXY


class GoogleApisProxy:
    """An HTTP proxy that plays ``*.googleapis.com`` in front of the emulator.

    TF's GCS filesystem sends ``CONNECT www.googleapis.com:443`` (and
    ``storage.googleapis.com``); the proxy answers, does the TLS handshake
    with a self-signed certificate (``ca_file``, to be trusted through
    ``CURL_CA_BUNDLE``) and relays the plain HTTP inside to the emulator.
    Plain ``http://`` proxy requests are relayed to the local address they
    name: the emulator (resumable-upload session URLs) or the
    :class:`TokenServer` (google-auth's token requests, so Beam and
    google-cloud-storage keep working in a process with :meth:`GcsEmulator.tf_env`).
    The servers answer HTTP/1.0 and close, so each connection carries one
    request; its head is adjusted on the way:

    * origin-form URL, and ``Host`` set to the emulator's address, because
      the emulator builds each object's ``mediaLink`` (which
      google-cloud-storage downloads from) and upload session URLs from it;
    * no ``Content-Length`` next to chunked encoding: TF's uploads send
      both, and the emulator would trust the length and store the chunk
      framing;
    * ``Expect: 100-continue`` answered here, so curl does not wait a
      second before each upload.
    """

    def __init__(self, target_host: str, target_port: int, cert_dir: Path) -> None:
        self.target = (target_host, target_port)
        self.ca_file, key_file = _self_signed_cert(Path(cert_dir))
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(self.ca_file, key_file)
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        self._server = socketserver.ThreadingTCPServer((LOCALHOST, 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, client: socket.socket) -> None:
        try:
            head, rest = _read_head(client)
            if head.startswith(b"CONNECT "):
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                client = self._tls.wrap_socket(client, server_side=True)
                head, rest = _read_head(client)
            self._forward(client, head, rest)
        except (OSError, ValueError):
            pass  # a client that went away or spoke nonsense: drop it
        finally:
            client.close()

    def _forward(self, client: socket.socket, head: bytes, rest: bytes) -> None:
        request_line, *headers = head.split(b"\r\n")
        method, target, version = request_line.split(b" ", 2)
        upstream_addr = self.target
        if b"://" in target:  # absolute form, as sent to a plain HTTP proxy
            authority, _, path = target.split(b"://", 1)[1].partition(b"/")
            upstream_addr = _local_address(authority.decode("latin-1")) or self.target
            target = b"/" + path
        names = [h.split(b":", 1)[0].strip().lower() for h in headers]
        values = [h.split(b":", 1)[-1].strip().lower() for h in headers]
        chunked = any(n == b"transfer-encoding" and v == b"chunked" for n, v in zip(names, values))
        expect = b"expect" in names
        headers = [
            h
            for h, n in zip(headers, names)
            if n not in (b"host", b"expect", b"proxy-connection") and not (chunked and n == b"content-length")
        ]
        headers.insert(0, b"Host: %s:%d" % (upstream_addr[0].encode(), upstream_addr[1]))
        upstream = socket.create_connection(upstream_addr, timeout=60)
        try:
            new_head = b"\r\n".join([b" ".join([method, target, version]), *headers])
            upstream.sendall(new_head + b"\r\n\r\n" + rest)
            if expect:
                client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join(timeout=60)
        finally:
            upstream.close()


def _local_address(authority: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``127.0.0.1:PORT`` or ``localhost:PORT`` authority; None for any other."""
    host, _, port = authority.rpartition(":")
    if host in (LOCALHOST, "localhost") and port.isdigit():
        return LOCALHOST, int(port)
    return None


def _read_head(sock: socket.socket, limit: int = 1 << 16) -> tuple[bytes, bytes]:
    """The request head (up to the blank line) and the bytes read after it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(4096)
        if not data or len(buf) > limit:
            raise ValueError("no complete request head")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until one side closes, then shut both down."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for the Google API hosts: (cert, key) files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gcs-emulator-proxy")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(h) for h in _GOOGLE_HOSTS]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file
