"""Shared pieces of the bot's end-to-end tests: the real bot over the fake Discord."""

from __future__ import annotations

import asyncio
import contextlib
import io
from pathlib import Path

import soundfile

from bot.bot import create_bot
from bot.settings import Settings
from engine.jobs import EngineConfig
from tests.fake_discord import FakeDiscord, StoredMessage


def settings_for(tmp_path: Path, **changes) -> Settings:
    # preload_text off: most tests never analyse text; the ones that do load the models on first use
    base = Settings(
        token="fake-token", data_dir=tmp_path, backend="arranger", progress_interval=0.0, preload_text=False
    )
    return base.with_(**changes)


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord, settings: Settings, connections: int = 1, engine_config: EngineConfig | None = None
):
    """The real bot (arranger backend, thread worker for speed) connected to ``fake``.

    ``engine_config`` replaces that engine set-up, e.g. ``EngineConfig(backend_factory=...)`` to
    inject a fault into the model layer (tests/test_jobs.py ``FaultyBackend``).
    """
    bot = create_bot(
        settings,
        engine_config=engine_config
        or EngineConfig(
            backend="arranger",
            worker="thread",
            max_queue=settings.max_queue,
            per_user_limit=settings.per_user_jobs,
        ),
    )
    task = asyncio.create_task(bot.start(settings.token))
    try:
        # with preload the analysis process loads the text models before the gateway connects
        await fake.wait_connected(connections, timeout=120.0 if settings.preload_text else 10.0)
        await fake.wait_until(
            lambda: bot.get_guild(fake.guild_id) is not None, 15, "the guild in the bot's cache"
        )
        yield bot
    finally:
        await bot.close()
        with contextlib.suppress(Exception):
            await task


def seconds_of(message: StoredMessage) -> float:
    """Duration of the message's first attachment, decoded."""
    audio, rate = soundfile.read(io.BytesIO(message.attachments[0].data))
    return len(audio) / rate


def embed_field(message: StoredMessage, name: str) -> str:
    for embed in message.embeds:
        for field in embed.get("fields", []):
            if field["name"] == name:
                return field["value"]
    raise AssertionError(f"no embed field {name!r} in {message.embeds}")
