"""The bot as a thin, safe Discord front (issues 13 and 14), end to end: the real discord.py client,
our real engine (offline arranger) and store, against the fake Discord in tests/fake_discord.

Channel rules for buttons and 🔁, private 🔁 refusals, analysis charging the rate limit, no payload
that can ping @everyone or a role, tokens redacted from DEBUG logs, /settings format, /bgm preset,
and limits a server can only lower.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from bot.ratelimit import Rate
from tests.bot_harness import embed_field, running_bot, seconds_of, settings_for
from tests.fake_discord import FakeDiscord
from tests.test_bot_library_e2e import slash_sub

RECYCLE = "\N{CLOCKWISE RIGHTWARDS AND LEFTWARDS OPEN CIRCLE ARROWS}"
LOFI = {"genre": "Lofi", "mood": "Calm", "duration": "5"}
HOSTILE = "@everyone @here <@&1>"


def track_posts(fake: FakeDiscord) -> list:
    return [m for m in fake.messages.values() if m.attachments and not m.deleted]


def outgoing_payloads(fake: FakeDiscord) -> list[dict]:
    """Every message body the bot sent (channel posts, edits, interaction responses, follow-ups)."""
    bodies = []
    for request in fake.requests:
        body = request.json
        if not isinstance(body, dict):
            continue
        if request.path.startswith("/interactions/"):  # {"type": 4, "data": {...}}
            body = body.get("data") or {}
        if body.get("content"):
            bodies.append(body)
    return bodies


def lets_through(body: dict) -> set[str]:
    """Which mass mentions a message body allows (Discord parses all of them without the field)."""
    allowed = body.get("allowed_mentions")
    if allowed is None:
        return {"everyone", "roles", "users"}
    return set(allowed.get("parse", []))


async def blocked_elsewhere(bot, fake: FakeDiscord) -> int:
    other = fake.new_id()
    await asyncio.to_thread(bot.store.set_guild_settings, fake.guild_id, allowed_channels=[str(other)])
    return other


async def test_buttons_and_reactions_obey_the_channel_rules(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        first = await (await fake.slash("bgm", LOFI)).wait_result(timeout=60)
        other = await blocked_elsewhere(bot, fake)
        for prefix in ("textunes:regen:", "textunes:ext:", "textunes:var:", "textunes:edit:"):
            button = next(i for i in first.custom_ids() if i.startswith(prefix))
            click = await fake.click(first, button)
            assert f"limited to <#{other}>" in await click.wait_error(), prefix
        await fake.react(first, RECYCLE)
        await fake.react(first, RECYCLE)
        await fake.wait_until(lambda: fake.dm_messages("alice"), 10, "the private note about the channel")
        await asyncio.sleep(1.0)  # time for a take that should not be made
        assert len(fake.dm_messages("alice")) == 1 and "limited to" in fake.dm_messages("alice")[0].content
        assert (
            len(track_posts(fake)) == 1
            and len(bot.store.jobs_of(fake.user_id("alice"), ("queued", "running", "done"))) == 1
        )
        assert not [m for m in fake.channel_messages() if m.id != first.id]  # nothing public


async def test_regenerate_over_the_rate_limit_is_told_privately_once(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    async with running_bot(fake, settings_for(tmp_path, user_rate=Rate(1, 60.0))) as bot:
        first = await (await fake.slash("bgm", LOFI)).wait_result(timeout=60)
        before = {m.id for m in fake.channel_messages()}
        for _ in range(3):
            await fake.react(first, RECYCLE)
        await fake.wait_until(lambda: fake.dm_messages("alice"), 10, "the DM refusal")
        await asyncio.sleep(1.0)
        dms = fake.dm_messages("alice")
        assert len(dms) == 1 and "try again in" in dms[0].content
        assert {m.id for m in fake.channel_messages()} == before  # no public refusal, no new take
        assert len(bot.store.jobs_of(fake.user_id("alice"), ("queued", "running", "done", "failed"))) == 1


async def test_a_failing_document_still_uses_up_the_rate_limit(fake: FakeDiscord, tmp_path: Path) -> None:
    fixtures = Path(__file__).parent / "fixtures"
    async with running_bot(fake, settings_for(tmp_path, user_rate=Rate(1, 60.0))):
        bad = fake.add_attachment("notes.txt", (fixtures / "binary_renamed.txt").read_bytes())
        failed = await fake.slash("bgm-from-text", {"file": bad})
        assert "not a text file" in await failed.wait_error(
            timeout=120
        )  # first document: the analysis process loads its models
        refused = await fake.slash("bgm", LOFI)
        assert "try again in" in await refused.wait_error()
        assert not track_posts(fake)


@pytest.mark.parametrize(
    ("filename", "document"),
    [
        ("mentions.txt", f"{HOSTILE}\n\nThe whole town woke early for the summer festival, happy and loud."),
        ("mentions.md", f"# {HOSTILE}\n\nThe whole town woke early for the summer festival, happy and loud."),
        (
            "mentions.html",
            f"<html><head><title>{HOSTILE}</title></head><body><p>The whole town woke early for the "
            "summer festival, happy and loud.</p></body></html>",
        ),
    ],
)
async def test_a_hostile_title_pings_nobody(
    fake: FakeDiscord, tmp_path: Path, filename: str, document: str
) -> None:
    attachment = fake.add_attachment(filename, document.encode())
    async with running_bot(fake, settings_for(tmp_path)):
        result = await (await fake.slash("bgm-from-text", {"file": attachment, "duration": "5"})).wait_result(
            timeout=120
        )
        await (await fake.slash("bgm", {**LOFI, "keywords": HOSTILE})).wait_result(timeout=60)
    assert "everyone" in result.content  # the title is shown…
    assert "@everyone" not in result.content and "<@&1>" not in result.content  # …escaped
    bodies = outgoing_payloads(fake)
    assert len(bodies) > 5
    for body in bodies:
        assert not lets_through(body) & {"everyone", "roles"}, body
        assert not body["allowed_mentions"].get("roles"), body
    owner_pings = [b for b in bodies if f"<@{fake.user_id('alice')}>" in b["content"]]
    assert owner_pings and all(
        b["allowed_mentions"].get("users") == [fake.user_id("alice")] for b in owner_pings
    )


async def test_debug_logging_never_shows_an_interaction_token(fake: FakeDiscord, tmp_path: Path) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(level=logging.DEBUG)
    root, discord_logger = logging.getLogger(), logging.getLogger("discord")
    old_level = discord_logger.level
    discord_logger.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        async with running_bot(fake, settings_for(tmp_path, log_level="DEBUG")):
            inter = await fake.slash("bgm", LOFI)
            await inter.wait_result(timeout=60)
            followup = await fake.slash("bgm", {"genre": "lofy", "mood": "Calm"})
            await followup.wait_error()
    finally:
        root.removeHandler(handler)
        discord_logger.setLevel(old_level)
    routes = [line for line in lines if "/webhooks/" in line or "/interactions/" in line]
    assert routes, "discord.py logged no interaction route at DEBUG"
    assert all("[redacted]" in line for line in routes)
    leaked = [line for line in lines if inter.token in line or followup.token in line or "fake-token" in line]
    assert not leaked, leaked[:3]


async def test_settings_format_ogg_delivers_ogg(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        await (await fake.slash("settings", {"format": "ogg"})).wait_original()
        result = await (await fake.slash("bgm", LOFI)).wait_result(timeout=60)
        other = await (await fake.slash("bgm", LOFI, user="bob")).wait_result(timeout=60)
        assert bot.settings.audio_format == "mp3"
    assert result.attachments[0].filename.endswith(".ogg") and result.attachments[0].data[:4] == b"OggS"
    assert abs(seconds_of(result) - 5.0) < 0.1
    assert other.attachments[0].filename.endswith(".mp3")  # bob kept the server's format
    # a bot whose operator chose ogg: members who chose nothing get ogg too
    async with running_bot(fake, settings_for(tmp_path / "ogg", audio_format="ogg"), connections=2):
        server_default = await (await fake.slash("bgm", LOFI, user="bob")).wait_result(timeout=60)
    assert server_default.attachments[0].filename.endswith(".ogg")


async def test_bgm_from_a_server_preset(fake: FakeDiscord, tmp_path: Path) -> None:
    async with running_bot(fake, settings_for(tmp_path)) as bot:
        await asyncio.to_thread(
            bot.store.add_guild_preset, fake.guild_id, "Study", genres=["Jazz"], moods=["Calm"], tempo="Slow",
            duration="0:06",
        )  # fmt: skip
        choices = await fake.autocomplete("bgm", {"preset": "stu"}, "preset")
        assert [c["value"] for c in choices] == ["Study"]
        result = await (await fake.slash("bgm", {"preset": "Study"})).wait_result(timeout=60)
        assert embed_field(result, "Genre") == "Jazz" and embed_field(result, "Mood") == "Calm"
        assert "Study" in result.content and abs(seconds_of(result) - 6.0) < 0.1
        typed = await (await fake.slash("bgm", {"preset": "Study", "duration": "5"})).wait_result(timeout=60)
        assert abs(seconds_of(typed) - 5.0) < 0.1  # what the member types wins over the preset
        missing = await fake.slash("bgm", {"preset": "Nope"})
        assert "no preset called 'Nope'" in await missing.wait_error()
        nothing = await fake.slash("bgm", {})
        assert "genre" in (await nothing.wait_error()).lower()


async def test_a_server_cannot_raise_the_operators_caps(fake: FakeDiscord, tmp_path: Path) -> None:
    fake.admins.add(fake.user_id("alice"))
    settings = settings_for(tmp_path, per_user_jobs=2, max_duration=60.0, user_rate=Rate(6, 60.0))
    async with running_bot(fake, settings) as bot:
        for option, value in (("jobs_per_user", 5), ("max_duration", "2:00"), ("user_jobs_per_minute", 50)):
            refused = await slash_sub(fake, "admin", "limits", {option: value})
            assert "can only lower it" in await refused.wait_error(), option
        assert (
            bot.store.guild_settings(fake.guild_id, defaults={"jobs_per_user": None})["jobs_per_user"] is None
        )
        lowered = await slash_sub(fake, "admin", "limits", {"max_duration": "0:30"})
        assert "max duration **0:30**" in await lowered.wait_error()
        too_long = await fake.slash("bgm", {**LOFI, "duration": "0:45"})
        assert "up to 30 s" in await too_long.wait_error()


async def test_a_document_that_times_out_is_told_privately_and_the_loop_stays_free(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    """Analysis runs in the engine's sandbox process: a document past its wall limit fails only that
    request, privately, while the bot's event loop (probed every 10 ms) keeps answering."""
    from tests.sandbox_inputs import LoopLag, slow_pdf

    slow = fake.add_attachment("slow.pdf", slow_pdf(), "application/pdf")
    settings = settings_for(tmp_path, analysis_seconds=1.0, preload_text=True)
    async with running_bot(fake, settings) as bot:
        assert bot.sandbox.pid is not None and bot.sandbox.pid != os.getpid()  # loaded, elsewhere
        async with LoopLag() as lag:
            inter = await fake.slash("bgm-from-text", {"file": slow})
            error = await inter.wait_error(timeout=60)
        assert "too large or complex to read within 1 s" in error and "⚠️" in error
        await fake.wait_until(
            lambda: inter.original is not None and inter.original.deleted, 10, "thinking… gone"
        )
        assert not track_posts(fake) and not [m for m in fake.channel_messages() if not m.deleted]
        assert len(lag.lags) > 50, len(lag.lags)
        print(
            f"event-loop lag while the document timed out: p99 {lag.p99() * 1000:.1f} ms, {len(lag.lags)} probes"
        )
        assert lag.p99() < 0.050, f"event-loop lag p99 {lag.p99() * 1000:.1f} ms"
        await (await fake.slash("bgm", LOFI)).wait_result(timeout=60)  # the bot still serves
