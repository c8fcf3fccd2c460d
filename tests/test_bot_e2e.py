"""The bot end to end: the real discord.py client, our real engine (offline arranger) and store,
against the fake Discord in tests/fake_discord on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.bot_harness import embed_field, running_bot, seconds_of, settings_for
from tests.fake_discord import FakeDiscord

RECYCLE = "\N{CLOCKWISE RIGHTWARDS AND LEFTWARDS OPEN CIRCLE ARROWS}"
FIXTURES = Path(__file__).parent / "fixtures"


async def test_bgm_defers_reports_progress_and_posts_a_decodable_track(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    async with running_bot(fake, settings_for(tmp_path)):
        inter = await fake.slash(
            "bgm", {"genre": "로파이", "mood": "calm", "tempo": "Slow", "duration": "0:05"}
        )
        result = await inter.wait_result(timeout=60)
        assert inter.ack_seconds is not None and inter.ack_seconds < 3.0
        contents = [edit.get("content") or "" for edit in result.edits]
        assert any("generating" in c for c in contents), contents  # progress was shown before the result
        seconds = seconds_of(result)
        assert abs(seconds - 5.0) < 0.1
        assert result.attachments[0].filename.endswith(".mp3")
        assert "lo-fi" in result.embeds[0]["description"].lower()
        assert embed_field(result, "Genre") == "Lofi" and "72 BPM" not in embed_field(result, "Genre")
        assert int(embed_field(result, "Seed")) >= 0
        ids = result.custom_ids()
        assert any(i.startswith("textunes:regen:") for i in ids) and any(
            i.startswith("textunes:ext:") for i in ids
        )
        await fake.wait_until(
            lambda: RECYCLE in result.reactions, 10, "the bot's own 🔁"
        )  # it invites a retake


async def test_autocomplete_answers_korean_and_english(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, settings_for(tmp_path)):
        korean = await fake.autocomplete("bgm", {"genre": "로파"}, "genre")
        english = await fake.autocomplete("bgm", {"genre": "lo"}, "genre")
        empty = await fake.autocomplete("bgm", {"genre": ""}, "genre")
        listed = await fake.autocomplete("bgm", {"instruments": "Piano, vio"}, "instruments")
    assert "Lofi" in [c["value"] for c in korean]
    assert "Lofi" in [c["value"] for c in english]
    assert 0 < len(empty) <= 25 and len(english) <= 25
    assert all(c["value"].startswith("Piano, ") for c in listed) and "Piano, Violin" in [
        c["value"] for c in listed
    ]


async def test_unknown_genre_is_an_ephemeral_error_with_suggestions(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    async with running_bot(fake, settings_for(tmp_path)):
        inter = await fake.slash("bgm", {"genre": "lofy", "mood": "Calm"})
        error = await inter.wait_error()
    assert "Did you mean" in error and "Lofi" in error


async def test_bgm_from_text_shows_the_analysis_and_posts_audio(fake: FakeDiscord, tmp_path: Path) -> None:
    attachment = fake.add_attachment("happy.txt", (FIXTURES / "happy_en.txt").read_bytes(), "text/plain")
    async with running_bot(fake, settings_for(tmp_path)):
        inter = await fake.slash("bgm-from-text", {"file": attachment, "duration": "5"})
        result = await inter.wait_result(timeout=120)
    assert fake.attachment_downloads(attachment)  # this one was read
    assert embed_field(result, "Emotion")
    assert "→" in embed_field(result, "Why this music")
    assert float(embed_field(result, "Valence / arousal").split("/")[0]) > 0  # a happy text
    seconds = seconds_of(result)
    assert abs(seconds - 5.0) < 0.1


@pytest.mark.parametrize(
    ("filename", "size", "expected"),
    [("novel.txt", 50 * 1024 * 1024, "limit"), ("virus.exe", 100, "Supported types")],
)
async def test_bad_uploads_are_refused_before_download(
    fake: FakeDiscord, tmp_path: Path, filename: str, size: int, expected: str
) -> None:
    attachment = fake.add_attachment(filename, b"hello", size=size)
    async with running_bot(fake, settings_for(tmp_path)):
        inter = await fake.slash("bgm-from-text", {"file": attachment})
        error = await inter.wait_error()
    assert expected in error
    assert not fake.attachment_downloads(attachment)


async def test_owner_reaction_regenerates_and_strangers_are_ignored(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        first = await (
            await fake.slash("bgm", {"genre": "Jazz", "mood": "Happy", "duration": "5"})
        ).wait_result()
        await fake.react(first, RECYCLE, user="bob")  # not bob's track
        await asyncio.sleep(0.5)
        assert not [m for m in fake.channel_messages() if m.attachments and m.id != first.id]
        await fake.react(first, RECYCLE, user="alice")
        await fake.wait_until(
            lambda: any(m.attachments and m.id != first.id for m in fake.channel_messages()),
            60,
            "the new take",
        )
        again = next(m for m in fake.channel_messages() if m.attachments and m.id != first.id)
        assert again.message_reference and int(again.message_reference["message_id"]) == first.id
        assert embed_field(again, "Seed") != embed_field(first, "Seed")
        await fake.wait_until(
            lambda: bot.ledger.job_by_message(again.id) is not None, 10, "delivery recorded"
        )
        assert bot.ledger.job_by_message(again.id).kind == "regenerate"


async def test_regenerate_button_works_after_a_restart(fake: FakeDiscord, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    async with running_bot(fake, settings):
        first = await (
            await fake.slash("bgm", {"genre": "Pop", "mood": "Bright", "duration": "5"})
        ).wait_result()
    regen = next(i for i in first.custom_ids() if i.startswith("textunes:regen:"))
    async with running_bot(fake, settings, connections=2):  # a new process: no views in memory
        stranger = await fake.click(first, regen, user="bob")
        assert "someone else" in await stranger.wait_error()
        click = await fake.click(first, regen)
        result = await click.wait_result(timeout=60)
    assert embed_field(result, "Seed") != embed_field(first, "Seed")
    seconds = seconds_of(result)
    assert abs(seconds - 5.0) < 0.1


async def test_extend_button_adds_fifteen_seconds(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, settings_for(tmp_path)):
        first = await (
            await fake.slash("bgm", {"genre": "Rock", "mood": "Energetic", "duration": "5"})
        ).wait_result()
        extend = next(i for i in first.custom_ids() if i.startswith("textunes:ext:"))
        result = await (await fake.click(first, extend)).wait_result(timeout=60)
    seconds = seconds_of(result)
    assert abs(seconds - 20.0) < 0.2


async def test_a_second_job_over_the_user_limit_is_refused(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, settings_for(tmp_path, per_user_jobs=1)):
        long_job = await fake.slash("bgm", {"genre": "Ambient", "mood": "Calm", "duration": "2:00"})
        await long_job.wait_original(lambda m: "generating" in m.content or "queued" in m.content)
        second = await fake.slash("bgm", {"genre": "Ambient", "mood": "Calm", "duration": "5"})
        error = await second.wait_error()
        assert "limit is 1" in error
        stranger = await fake.slash("cancel", {}, user="bob")
        assert "no job" in (await stranger.wait_error()).lower()
        mine = await fake.slash("cancel", {})
        assert "Cancelled" in await mine.wait_error()
        try:
            final = await long_job.wait_original(lambda m: "cancelled" in m.content, timeout=10)
        except AssertionError:
            raise AssertionError([e.get("content") for e in long_job.original.edits]) from None
    assert not final.attachments


async def test_duration_over_the_limit_is_refused(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, settings_for(tmp_path, max_duration=30.0)):
        inter = await fake.slash("bgm", {"genre": "Lofi", "mood": "Calm", "duration": "1:00"})
        error = await inter.wait_error()
    assert re.search(r"up to 30 s", error)
