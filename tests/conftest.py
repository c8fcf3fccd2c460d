"""Shared pytest fixtures (helpers append theirs below)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_musicgen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MusicGen checkpoint folder (built once per test session, ~2 s)."""
    from tests.tiny_musicgen import build_tiny_musicgen

    return build_tiny_musicgen(tmp_path_factory.mktemp("tiny-musicgen"))


@pytest.fixture
async def fake():
    """A fake Discord on 127.0.0.1 with discord.py pointed at it (restored afterwards)."""
    import discord.gateway
    import discord.http

    from tests.fake_discord import FakeDiscord

    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    server = FakeDiscord()
    await server.start()
    server.point_discord_py_here()
    yield server
    await server.close()
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
