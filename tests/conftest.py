"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

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
