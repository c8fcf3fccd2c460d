"""More of the bot end to end (real discord.py client, real engine + store, fake Discord):
a full queue, /queue and /cancel between users, a PDF and pasted text for /bgm-from-text, /categories."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.bot_harness import embed_field, running_bot, seconds_of, settings_for
from tests.fake_discord import FakeDiscord, StoredMessage
from tests.test_ingest import make_pdf

FIXTURES = Path(__file__).parent / "fixtures"


async def test_full_queue_refuses_politely_and_only_owners_cancel(fake: FakeDiscord, tmp_path: Path) -> None:
    # one job running (long: 4 takes of 2 minutes) and one waiting fill a queue of 1
    async with running_bot(fake, settings_for(tmp_path, max_queue=1, per_user_jobs=2)) as bot:
        running = await fake.slash(
            "bgm", {"genre": "Ambient", "mood": "Calm", "duration": "2:00", "samples": 4}
        )
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
        from_pdf = await (await fake.slash("bgm-from-text", {"file": pdf, "duration": "5"})).wait_result(
            timeout=120
        )
        pasted = await fake.slash(
            "bgm-from-text",
            {"text": "오늘은 햇살이 좋아서 친구들과 공원에서 즐겁게 웃으며 놀았다.", "duration": "5"},
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


async def test_jobs_interrupted_by_a_restart_are_resumed_and_posted_once(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    async with running_bot(fake, settings) as bot:
        running = await fake.slash(
            "bgm", {"genre": "Ambient", "mood": "Calm", "duration": "1:00", "samples": 2}
        )
        await running.wait_original(lambda m: "generating" in m.content)
        waiting = await fake.slash("bgm", {"genre": "Lofi", "mood": "Calm", "duration": "5"})
        await waiting.wait_original(lambda m: "queued" in m.content)
        job_ids = bot.engine.jobs_of(str(fake.user_id("alice")))
    # the bot stopped with one job running and one queued: neither may be marked failed
    async with running_bot(fake, settings, connections=2) as bot:
        assert [bot.store.get_job(j).attempts for j in job_ids]  # both still known to the store

        def delivered() -> list[StoredMessage]:
            # in the interactions' replies while their tokens live (bot/delivery.py recovery_surface)
            return [
                m for m in (running.original, waiting.original) if m.attachments and "resumed" in m.content
            ]

        await fake.wait_until(
            lambda: len(delivered()) == 2, 90, "both interrupted jobs posted after the restart"
        )
        await asyncio.sleep(0.3)
        assert len(delivered()) == 2  # exactly once each
        states = {j: bot.store.get_job(j).state for j in job_ids}
    assert set(states.values()) == {"done"}, states
    by_takes = sorted(len(m.attachments) for m in delivered())
    assert by_takes == [1, 2]
    short = next(m for m in delivered() if len(m.attachments) == 1)
    assert abs(seconds_of(short) - 5.0) < 0.1


async def test_variation_button_and_edit_prompt_modal(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, settings_for(tmp_path)):
        first = await (
            await fake.slash("bgm", {"genre": "Jazz", "mood": "Calm", "duration": "6"})
        ).wait_result()
        variation_id = next(i for i in first.custom_ids() if i.startswith("textunes:var:"))
        variation = await (await fake.click(first, variation_id)).wait_result(timeout=60)
        assert abs(seconds_of(variation) - 6.0) < 0.3  # the opening kept, the rest made anew

        edit_id = next(i for i in first.custom_ids() if i.startswith("textunes:edit:"))
        stranger = await fake.click(first, edit_id, user="bob")
        assert "someone else" in await stranger.wait_error()
        click = await fake.click(first, edit_id)
        modal = await click.wait_callback()
        assert modal["type"] == 9  # Discord's MODAL response
        field_id = modal["data"]["components"][0]["components"][0]["custom_id"]
        submitted = await fake.submit_modal(
            modal["data"]["custom_id"],
            {field_id: "slow jazz trio, brushed drums, late night bar"},
            message=first,
        )
        edited = await submitted.wait_result(timeout=60)
    assert "brushed drums" in edited.embeds[0]["description"]
    assert abs(seconds_of(edited) - 6.0) < 0.1


async def test_unreadable_document_error_is_private(fake: FakeDiscord, tmp_path: Path) -> None:
    attachment = fake.add_attachment(
        "notes.txt", (FIXTURES / "binary_renamed.txt").read_bytes(), "text/plain"
    )
    async with running_bot(fake, settings_for(tmp_path)):
        inter = await fake.slash("bgm-from-text", {"file": attachment})
        error = await inter.wait_error(timeout=30)
        await fake.wait_until(
            lambda: inter.original is not None and inter.original.deleted, 10, "thinking… removed"
        )
    assert fake.attachment_downloads(attachment)  # it had to be read to know
    assert "⚠️" in error and "notes.txt" in error
    assert not [m for m in fake.channel_messages() if "⚠️" in m.content and not m.ephemeral]


async def test_text_mode_over_the_user_limit_is_refused_before_download(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    attachment = fake.add_attachment("happy.txt", (FIXTURES / "happy_en.txt").read_bytes(), "text/plain")
    async with running_bot(fake, settings_for(tmp_path, per_user_jobs=1)):
        busy = await fake.slash("bgm", {"genre": "Ambient", "mood": "Calm", "duration": "2:00", "samples": 4})
        await busy.wait_original(lambda m: "generating" in m.content)
        inter = await fake.slash("bgm-from-text", {"file": attachment})
        error = await inter.wait_error()
        await (await fake.slash("cancel", {})).wait_error()
    assert "limit is 1" in error
    assert inter.callback is not None and inter.callback["type"] == 4  # answered directly, never deferred
    assert not fake.attachment_downloads(attachment)


async def test_text_models_are_loaded_before_the_bot_goes_online(fake: FakeDiscord, tmp_path: Path) -> None:
    from bot.settings import Settings, SettingsError

    assert Settings.from_env({}).preload_text is True
    assert Settings.from_env({"TEXTUNES_PRELOAD_TEXT": "0"}).preload_text is False
    with pytest.raises(SettingsError, match="TEXTUNES_PRELOAD_TEXT"):
        Settings.from_env({"TEXTUNES_PRELOAD_TEXT": "maybe"})

    async with running_bot(fake, settings_for(tmp_path, preload_text=True)) as bot:
        # the analysis process was started (models loaded) in setup_hook, before the gateway connected
        child = bot.sandbox.pid
        assert child is not None and child != os.getpid() and bot.sandbox.mapped_bytes > 0
        pasted = await fake.slash(
            "bgm-from-text", {"text": "A quiet walk by the sea at dawn.", "duration": "5"}
        )
        await pasted.wait_result(timeout=120)
        assert bot.sandbox.pid == child  # the first request reused it
