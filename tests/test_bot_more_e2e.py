"""More of the bot end to end (real discord.py client, real engine + store, fake Discord):
a full queue, /queue and /cancel between users, a PDF and pasted text for /bgm-from-text, /categories."""

from __future__ import annotations

import asyncio
import contextlib
import io
from pathlib import Path

import pytest
import soundfile

from bot.bot import create_bot
from bot.settings import Settings
from engine.jobs import EngineConfig
from tests.fake_discord import FakeDiscord, StoredMessage
from tests.test_ingest import make_pdf


@pytest.fixture
async def fake():
    import discord.gateway
    import discord.http

    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    server = FakeDiscord()
    await server.start()
    server.point_discord_py_here()
    yield server
    await server.close()
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


def settings_for(tmp_path: Path, **changes) -> Settings:
    return Settings(token="fake-token", data_dir=tmp_path, backend="arranger", progress_interval=0.0).with_(**changes)


@contextlib.asynccontextmanager
async def running_bot(fake: FakeDiscord, settings: Settings):
    bot = create_bot(
        settings,
        engine_config=EngineConfig(
            backend="arranger", worker="thread", max_queue=settings.max_queue, per_user_limit=settings.per_user_jobs
        ),
    )
    task = asyncio.create_task(bot.start(settings.token))
    try:
        await fake.wait_connected(1)
        await fake.wait_until(lambda: bot.get_guild(fake.guild_id) is not None, 15, "the guild in the bot's cache")
        yield bot
    finally:
        await bot.close()
        with contextlib.suppress(Exception):
            await task


def seconds_of(message: StoredMessage) -> float:
    audio, rate = soundfile.read(io.BytesIO(message.attachments[0].data))
    return len(audio) / rate


def embed_field(message: StoredMessage, name: str) -> str:
    for embed in message.embeds:
        for field in embed.get("fields", []):
            if field["name"] == name:
                return field["value"]
    raise AssertionError(f"no embed field {name!r} in {message.embeds}")


async def test_full_queue_refuses_politely_and_only_owners_cancel(fake: FakeDiscord, tmp_path: Path) -> None:
    # one job running (long: 4 takes of 2 minutes) and one waiting fill a queue of 1
    async with running_bot(fake, settings_for(tmp_path, max_queue=1, per_user_jobs=2)) as bot:
        running = await fake.slash("bgm", {"genre": "Ambient", "mood": "Calm", "duration": "2:00", "samples": 4})
        await running.wait_original(lambda m: "generating" in m.content)
        waiting = await fake.slash("bgm", {"genre": "Lofi", "mood": "Calm", "duration": "5"})
        queued = await waiting.wait_original(lambda m: "queued" in m.content)
        assert "position 1" in queued.content

        bob = await fake.slash("bgm", {"genre": "Jazz", "mood": "Happy", "duration": "5"}, user="bob")
        assert "queue is full" in (await bob.wait_error()).lower()

        status = await (await fake.slash("queue", {})).wait_error()
        assert "Jobs waiting: **1**" in status and "generating now" in status and "position 1" in status

        alice_jobs = bot.engine.jobs_of(str(fake.user_id("alice")))
        assert len(alice_jobs) == 2
        steal = await fake.slash("cancel", {"job": alice_jobs[-1]}, user="bob")
        assert "someone else" in await steal.wait_error()
        assert bot.engine.position(alice_jobs[-1]) == 1  # still queued

        for _ in alice_jobs:  # the owner cancels both, newest first
            assert "Cancelled" in await (await fake.slash("cancel", {})).wait_error()
        final = await waiting.wait_original(lambda m: "cancelled" in m.content)
        assert not final.attachments
        await running.wait_original(lambda m: "cancelled" in m.content, timeout=60)
        assert bot.store.get_job(alice_jobs[-1]).state == "cancelled"


async def test_bgm_from_a_pdf_and_from_pasted_text(fake: FakeDiscord, tmp_path: Path) -> None:
    story = (
        "The storm broke over the harbour at midnight. Waves smashed the boats, the lights went out, "
        "and the sailors ran through the rain, shouting, afraid they would lose everything they had."
    )
    pdf = fake.add_attachment("storm.pdf", make_pdf([story, story]), "application/pdf")
    async with running_bot(fake, settings_for(tmp_path)):
        from_pdf = await (await fake.slash("bgm-from-text", {"file": pdf, "duration": "5"})).wait_result(timeout=120)
        pasted = await fake.slash(
            "bgm-from-text", {"text": "오늘은 햇살이 좋아서 친구들과 공원에서 즐겁게 웃으며 놀았다.", "duration": "5"}
        )
        from_text = await pasted.wait_result(timeout=120)
    assert fake.attachment_downloads(pdf)
    for message in (from_pdf, from_text):
        assert abs(seconds_of(message) - 5.0) < 0.1
        assert embed_field(message, "Emotion") and embed_field(message, "Why this music")
    assert float(embed_field(from_text, "Valence / arousal").split("/")[0]) > 0  # a cheerful Korean text


async def test_categories_lists_korean_and_english(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, settings_for(tmp_path)):
        genres = await (await fake.slash("categories", {"kind": "genres", "search": "lo"})).wait_error()
        nothing = await (await fake.slash("categories", {"kind": "moods", "search": "zzzzzz"})).wait_error()
    assert "Lofi" in genres and "로파이" in genres
    assert "No moods match" in nothing
