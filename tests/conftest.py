"""Shared pytest fixtures (helpers append theirs below)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_musicgen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MusicGen checkpoint folder (built once per test session, ~2 s)."""
    from tests.tiny_musicgen import build_tiny_musicgen

    return build_tiny_musicgen(tmp_path_factory.mktemp("tiny-musicgen"))
