"""tools/images.sh, the container image builder: real buildah builds on a Debian base made here.

What CI can afford: a small image built with the same builder (base from debootstrap, tagged only
on success, a failed build changes nothing) and the two bad-input cases, no root and no network.
The full images (``make image``, ``make image-test``: TensorFlow and all, about 15 minutes) are a
separate command whose last run BENCHMARKS.md records.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "images.sh"
ROOT_USER = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT_USER, reason="image builds need root here (vfs storage, chroot isolation)")
needs_buildah = pytest.mark.skipif(shutil.which("buildah") is None or shutil.which("debootstrap") is None,
                                   reason="buildah/debootstrap not installed (make system installs them as root)")


BUILDAH_ENV = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}


def _buildah(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["buildah", *args], capture_output=True, text=True, env=BUILDAH_ENV)


def _images(*args: str, prefix: tuple[str, ...] = (), timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, "bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def _image_id(tag: str) -> str | None:
    proc = _buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", tag)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def test_without_root_one_line():
    prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups") if ROOT_USER else ()
    proc = _images("build", prefix=prefix)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs root" in lines[0], proc.stderr


@needs_root
@needs_buildah
def test_without_network_one_line():
    proc = _images("build", prefix=("unshare", "--net"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("images: no network: cannot reach"), proc.stderr


@needs_root
@needs_buildah
def test_build_is_tagged_only_when_it_succeeds(tmp_path):
    """A real build on the local Debian base (Python 3.11 on PATH); a failing build of the same tag
    leaves the previous image where it was and no partial tag behind."""
    tag = f"localhost/vsep-test-{os.getpid()}:latest"
    good = tmp_path / "good" / "Dockerfile"
    good.parent.mkdir()
    good.write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
                    "RUN python -c \"import sys; assert sys.version_info[:2] == (3, 11), sys.version\"\n"
                    "RUN pip --version && echo built > /built\n")
    bad = tmp_path / "bad" / "Dockerfile"
    bad.parent.mkdir()
    bad.write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo half > /half\nRUN exit 3\n")
    try:
        proc = _images("dockerfile", str(good), tag)
        assert proc.returncode == 0, proc.stderr[-2000:]
        first = _image_id(tag)
        assert first, f"{tag} was not tagged"
        ctr = _buildah("from", "--quiet", tag).stdout.strip()
        assert ctr
        try:
            out = _buildah("run", "--isolation", "chroot", ctr, "--", "cat", "/built")
            assert out.stdout.strip() == "built", out.stderr
        finally:
            _buildah("rm", ctr)
        proc = _images("dockerfile", str(bad), tag)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines()[-1] == \
            f"images: build of {bad} failed (see above); {tag} was not changed", proc.stderr[-2000:]
        assert _image_id(tag) == first, "the failed build moved the tag"
        listed = _buildah("images", "--format", "{{.Name}}").stdout
        assert "vsep-build-" not in listed, listed
    finally:
        _buildah("rmi", "-f", tag)
