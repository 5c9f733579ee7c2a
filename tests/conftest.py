"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gcs_emulator import GcsEmulator, gcs_emulator


@pytest.fixture(scope="session")
def gcs() -> Iterator[GcsEmulator]:
    """A real GCS emulator on 127.0.0.1 with bucket ``vsep-test``; ``gs://`` works.

    Shared by the session: use a unique prefix per test, and if a test stops
    the emulator it must ``start()`` it again.
    """
    with gcs_emulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def enroll_lake(tmp_path_factory) -> Path:
    """A small lake of real recordings (``realdata.small_lake``) for the speaker bank's tests."""
    from realdata import small_lake

    return small_lake(tmp_path_factory)


@pytest.fixture(scope="session")
def enroll_bank(enroll_lake, tmp_path_factory) -> Path:
    """``vsep bank`` of :func:`enroll_lake`: 2 s windows, Biden, libri-1034 and babble held out for val,
    libri-11* for test."""
    from vsep import bank

    from realdata import TARGET

    out = tmp_path_factory.mktemp("bank")
    assert bank.main(["--lake", str(enroll_lake), "--output", str(out), "--target", TARGET, "--window-s", "2.0",
                      "--split-fractions", "1", "0", "0", "--val-holdout", "biden/*", "libri-1034/*", "babble/*",
                      "--test-holdout", "libri-11*/*"]) == 0
    return out
