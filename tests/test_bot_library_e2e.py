"""/history, /favorite (+ ⭐ button and reaction), /settings and /admin through the fake Discord.

The real discord.py client talks to tests.fake_discord over 127.0.0.1; the store is a real sqlite
file, so "restart" means a second bot process-equivalent opening the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
from pathlib import Path

import discord
import numpy as np
import soundfile
from discord.ext import commands

from bot.delivery.ledger import DeliveryLedger
from engine.spec import MusicSpec, Track
from engine.store import Store, spec_to_request
from tests.fake_discord import FakeDiscord, StoredMessage

STAR = "\N{WHITE MEDIUM STAR}"


class HostBot(commands.Bot):
    """The smallest bot that hosts the library/admin cogs: a store and the two extensions."""

    def __init__(self, store: Store) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default())
        self.store = store
        self.ledger = DeliveryLedger.open(store)  # the bot's delivery table (⭐ finds the job by message)

    async def setup_hook(self) -> None:
        await self.load_extension("bot.cogs.library")
        await self.load_extension("bot.cogs.admin")


@contextlib.asynccontextmanager
async def running_bot(fake: FakeDiscord, db: Path, connections: int = 1):
    store = Store.open(db)
    bot = HostBot(store)
    task = asyncio.create_task(bot.start("fake-token"))
    try:
        await fake.wait_connected(connections)
        await fake.wait_until(
            lambda: bot.get_guild(fake.guild_id) is not None, 10, "the guild in the bot's cache"
        )
        yield bot
    finally:
        await bot.close()
        with contextlib.suppress(Exception):
            await task
        store.close()


def make_track(prompt: str, seconds: float = 0.5, seed: int = 1, freq: float = 330.0) -> Track:
    rate = 32000
    t = np.arange(int(seconds * rate)) / rate
    audio = (0.4 * np.sin(2 * np.pi * freq * t))[None, :].astype(np.float32)
    spec = MusicSpec(prompt=prompt, genres=(prompt.split()[0],), moods=("Calm",), duration=seconds)
    return Track(audio=audio, sample_rate=rate, spec=spec, seed=seed, backend="arranger", model="test")


def seed_tracks(
    db: Path, user_id: int, prompts: list[str], fmt: str = "wav", seconds: float = 0.5
) -> list[str]:
    """Tracks as /bgm would have left them: a finished job per track, audio on disk."""
    ids = []
    with Store.open(db) as store:
        for n, prompt in enumerate(prompts):
            track = make_track(prompt, seconds=seconds, seed=100 + n, freq=220 + 50 * n)
            job = store.create_job(user_id=user_id, request=spec_to_request(track.spec), guild_id=1)
            ids.append(store.add_track(job.id, track, fmt=fmt).id)
            store.mark_done(job.id)
    return ids


async def slash_sub(
    fake: FakeDiscord, group: str, sub: str, options: dict, *, user: str = "alice", resolved=None
):
    """A slash command inside a group (/admin limits ...): the fake's helper builds only top-level ones."""
    opts, res = fake._options(options)
    for opt in opts:  # channel options are type 7 and resolved by Discord
        if resolved and str(opt["value"]) in resolved.get("channels", {}):
            opt["type"] = 7
    data = {
        "id": str(fake.new_id()),
        "name": group,
        "type": 1,
        "options": [{"type": 1, "name": sub, "options": opts}],
    }
    if res or resolved:
        data["resolved"] = {**res, **(resolved or {})}
    return await fake._inject(fake._interaction_payload(2, data, user))


async def autocomplete_sub(
    fake: FakeDiscord, group: str, sub: str, options: dict, focused: str, user="alice"
):
    opts, _ = fake._options(options, focused)
    data = {
        "id": str(fake.new_id()),
        "name": group,
        "type": 1,
        "options": [{"type": 1, "name": sub, "options": opts}],
    }
    inter = await fake._inject(fake._interaction_payload(4, data, user))
    await inter.wait_callback()
    return inter.choices()


async def choose(
    fake: FakeDiscord, message: StoredMessage, custom_id: str, value: str, *, user: str = "alice"
):
    """Pick ``value`` in a select menu (the fake's ``click`` is for buttons)."""
    assert custom_id in message.custom_ids(), message.custom_ids()
    data = {"custom_id": custom_id, "component_type": 3, "values": [value]}
    return await fake._inject(fake._interaction_payload(3, data, user, message))


async def eventually(predicate, timeout: float = 5.0) -> bool:
    """Poll state the fake cannot see (the store) until ``predicate`` holds or time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def select_options(message: StoredMessage) -> list[dict]:
    return [c for row in message.components for c in row["components"] if c.get("type") == 3][0]["options"]


async def wait_posted_audio(inter) -> StoredMessage:
    """The re-post: the deferred public response edited to carry the audio."""
    return await inter.wait_original(lambda m: bool(m.attachments) and not m.ephemeral, timeout=20)


# ------------------------------------------------------------------------------------------------
async def test_history_lists_newest_first_and_reposts_the_chosen_track(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    alice, bob = fake.user_id("alice"), fake.user_id("bob")
    ids = seed_tracks(db, alice, ["Lofi one", "Jazz two", "Ambient three"])
    seed_tracks(db, bob, ["Rock bob"])
    async with running_bot(fake, db):
        inter = await fake.slash("history")
        listing = await inter.wait_original()
        assert listing.ephemeral
        text = listing.text()
        assert text.index("Ambient") < text.index("Jazz") < text.index("Lofi") and "Rock" not in text
        assert [o["value"] for o in select_options(listing)] == ids[::-1]
        custom_id = listing.custom_ids()[0]

        stranger = await choose(fake, listing, custom_id, ids[1], user="bob")
        assert "someone else" in await stranger.wait_error()

        repost = await choose(fake, listing, custom_id, ids[1])
        posted = await wait_posted_audio(repost)
        with Store.open(db) as store:
            stored = store.get_track(ids[1])
        data = posted.attachments[0].data
        assert hashlib.sha256(data).hexdigest() == stored.sha256  # the very file we kept
        audio, rate = soundfile.read(io.BytesIO(data))
        assert rate == 32000 and len(audio) == 16000
        assert "Jazz two" in posted.text() and f"<@{alice}>" in posted.content
        assert f"textunes:fav:{ids[1]}" in posted.custom_ids()

        empty = await fake.slash("history", user="bob")
        assert "Rock" in (await empty.wait_original()).text()


async def test_history_select_still_works_after_restart(fake: FakeDiscord, tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    ids = seed_tracks(db, fake.user_id("alice"), ["Lofi before restart"])
    async with running_bot(fake, db):
        listing = await (await fake.slash("history")).wait_original()
    async with running_bot(fake, db, connections=2):  # a fresh bot: no views in memory
        repost = await choose(fake, listing, listing.custom_ids()[0], ids[0])
        posted = await wait_posted_audio(repost)
        assert posted.attachments[0].filename == f"textunes-{ids[0]}.wav"


async def test_repost_is_reencoded_to_fit_the_upload_limit(tmp_path: Path) -> None:
    import discord.gateway
    import discord.http

    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    fake = FakeDiscord(attachment_size_limit=60_000)
    await fake.start()
    fake.point_discord_py_here()
    try:
        db = tmp_path / "bot.db"
        ids = seed_tracks(db, fake.user_id("alice"), ["Orchestral long"], seconds=3.0)  # wav ~192 kB
        async with running_bot(fake, db):
            listing = await (await fake.slash("history")).wait_original()
            posted = await wait_posted_audio(await choose(fake, listing, listing.custom_ids()[0], ids[0]))
            attachment = posted.attachments[0]
            assert attachment.filename.endswith(".mp3") and attachment.size <= 60_000
            audio, rate = soundfile.read(io.BytesIO(attachment.data))
            assert rate == 32000 and abs(len(audio) / rate - 3.0) < 0.1
    finally:
        await fake.close()
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


async def test_favorite_button_command_and_star_reaction(fake: FakeDiscord, tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    alice, bob = fake.user_id("alice"), fake.user_id("bob")
    ids = seed_tracks(db, alice, ["Lofi a", "Jazz b", "Funk c"])
    async with running_bot(fake, db) as bot:
        store: Store = bot.store
        listing = await (await fake.slash("history")).wait_original()
        posted = await wait_posted_audio(await choose(fake, listing, listing.custom_ids()[0], ids[0]))

        # ⭐ button: toggles for whoever clicks (bob may keep alice's track too)
        click = await fake.click(posted, f"textunes:fav:{ids[0]}", user="bob")
        assert "Added to your favorites" in (await click.wait_original()).text()
        assert store.is_favorite(bob, ids[0]) and not store.is_favorite(alice, ids[0])
        again = await fake.click(posted, f"textunes:fav:{ids[0]}", user="bob")
        assert "Removed" in (await again.wait_original()).text()
        assert not store.is_favorite(bob, ids[0])

        # /favorite with autocomplete over your history
        choices = await fake.autocomplete("favorite", {"track": "jaz"}, "track")
        assert [c["value"] for c in choices] == [ids[1]]
        fav = await fake.slash("favorite", {"track": ids[1]})
        assert "Added to your favorites" in (await fav.wait_original()).text()
        assert [t.id for t in store.favorites(alice)] == [ids[1]]
        listed = await (await fake.slash("favorite")).wait_original()
        assert "Jazz, Calm" in listed.text() and [o["value"] for o in select_options(listed)] == [ids[1]]
        unknown = await fake.slash("favorite", {"track": "not-a-track"})
        assert "can't find that track" in await unknown.wait_error()
        removed = await fake.slash("favorite", {"track": ids[1], "remove": True})
        assert "Removed" in (await removed.wait_original()).text()
        assert store.favorites(alice) == []

        # ⭐ reaction on the message a job was delivered in favorites that job's track
        job_id = store.get_track(ids[2]).job_id
        bot.ledger.record(job_id, user_id=alice, guild_id=fake.guild_id, channel_id=posted.channel_id)
        bot.ledger.mark_delivered(job_id, posted.id)
        await fake.react(posted, STAR, user="alice")
        assert await eventually(lambda: store.is_favorite(alice, ids[2]))
        await fake.dispatch(
            "MESSAGE_REACTION_REMOVE",
            {"user_id": str(alice), "channel_id": str(posted.channel_id), "message_id": str(posted.id),
             "guild_id": str(fake.guild_id), "emoji": {"id": None, "name": STAR}, "burst": False, "type": 0},
        )  # fmt: skip
        assert await eventually(lambda: not store.is_favorite(alice, ids[2]))


async def test_settings_show_validate_and_save(fake: FakeDiscord, tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    alice = fake.user_id("alice")
    async with running_bot(fake, db) as bot:
        store: Store = bot.store
        shown = await (await fake.slash("settings")).wait_original()
        assert shown.ephemeral and "not set" in shown.text()

        saved = await (
            await fake.slash("settings", {"tempo": "빠르게", "duration": "0:30", "format": "ogg"})
        ).wait_original()
        assert "Fast" in saved.text() and "0:30" in saved.text() and "ogg" in saved.text()
        assert store.user_settings(alice) == {"tempo": "Fast", "duration": 30.0, "format": "ogg"}

        choices = await fake.autocomplete("settings", {"tempo": "sl"}, "tempo")
        assert choices[0]["value"] == "Slow"

        bad_tempo = await fake.slash("settings", {"tempo": "warp"})
        assert "Unknown tempo 'warp'" in await bad_tempo.wait_error()
        too_long = await fake.slash("settings", {"duration": "9:00"})
        assert "out of range" in await too_long.wait_error()
        store.set_guild_settings(fake.guild_id, max_duration=20)
        over_server_cap = await fake.slash("settings", {"duration": "25"})
        assert "at most 0:20" in await over_server_cap.wait_error()
        assert store.user_settings(alice)["duration"] == 30.0  # rejected input changed nothing

        reset = await (await fake.slash("settings", {"reset": True})).wait_original()
        assert "not set" in reset.text() and store.user_settings(alice)["tempo"] is None


async def test_admin_commands_need_manage_server(fake: FakeDiscord, tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    async with running_bot(fake, db) as bot:
        denied = await slash_sub(fake, "admin", "limits", {"jobs_per_user": 9})
        assert "Manage Server" in await denied.wait_error()
        denied = await slash_sub(fake, "admin", "category-add", {"kind": "genres", "name": "Sneaky"})
        assert "Manage Server" in await denied.wait_error()
        assert bot.store.guild_settings(fake.guild_id)["jobs_per_user"] == 2
        assert bot.store.guild_categories(fake.guild_id) == []
        synced = {c.name: c for c in bot.tree.get_commands()}
        assert synced["admin"].default_permissions.manage_guild  # hidden from members in Discord's UI


async def test_admin_limits_channels_categories_presets(fake: FakeDiscord, tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    fake.admins.add(fake.user_id("alice"))
    ids = seed_tracks(db, fake.user_id("alice"), ["Lofi admin"])
    async with running_bot(fake, db) as bot:
        store: Store = bot.store
        gid = fake.guild_id

        ok = await slash_sub(fake, "admin", "limits", {"jobs_per_user": 3, "max_duration": "1:00"})
        assert "Saved" in (await ok.wait_original()).text()
        assert (
            store.guild_settings(gid)["jobs_per_user"] == 3
            and store.guild_settings(gid)["max_duration"] == 60
        )
        bad = await slash_sub(fake, "admin", "limits", {"jobs_per_user": 0})
        assert "between 1 and 20" in await bad.wait_error()

        # channels: restricting elsewhere blocks a re-post here, with a message saying where to go
        other = fake.new_id()
        channel = {"id": str(other), "type": 0, "name": "bgm-only", "guild_id": str(gid), "permissions": "0"}
        allow = await slash_sub(fake, "admin", "channels", {"action": "allow", "channel": str(other)},
                                resolved={"channels": {str(other): channel}})  # fmt: skip
        assert f"now works in <#{other}>" in (await allow.wait_original()).text()
        assert store.guild_settings(gid)["allowed_channels"] == [str(other)]
        listing = await (await fake.slash("history")).wait_original()
        blocked = await choose(fake, listing, listing.custom_ids()[0], ids[0])
        assert f"limited to <#{other}>" in await blocked.wait_error()
        everywhere = await slash_sub(fake, "admin", "channels", {"action": "all"})
        assert "every channel" in (await everywhere.wait_original()).text()
        assert store.guild_settings(gid)["allowed_channels"] == []

        # categories: added ones show in autocomplete, can be removed
        add = await slash_sub(
            fake, "admin", "category-add", {"kind": "genres", "name": "Chiptune Boss", "korean": "칩튠 보스"}
        )
        assert "Chiptune Boss" in (await add.wait_original()).text()
        choices = await autocomplete_sub(
            fake, "admin", "category-remove", {"kind": "genres", "name": "chip"}, "name"
        )
        assert [c["value"] for c in choices] == ["Chiptune Boss"]
        gone = await slash_sub(fake, "admin", "category-remove", {"kind": "genres", "name": "칩튠 보스"})
        assert "Removed" in (await gone.wait_original()).text()
        assert store.guild_categories(gid) == []
        missing = await slash_sub(fake, "admin", "category-remove", {"kind": "genres", "name": "Nope"})
        assert "no custom genre called 'Nope'" in await missing.wait_error()

        # presets: names resolved through the catalogue (Korean ok), typos answered with suggestions
        preset = await slash_sub(fake, "admin", "preset-add", {"name": "Horror game", "genres": "ambient, 시네마틱",
                                                                "moods": "무서운", "tempo": "slow", "duration": "0:45"})  # fmt: skip
        assert "Horror game" in (await preset.wait_original()).text()
        saved = store.get_guild_preset(gid, "horror game")
        assert saved.genres == ("Ambient", "Cinematic") and saved.moods == ("Scary",)
        assert saved.tempo == "Slow" and saved.duration == 45.0
        typo = await slash_sub(fake, "admin", "preset-add", {"name": "Study", "genres": "lofy"})
        assert "Did you mean: Lofi" in await typo.wait_error()
        assert store.get_guild_preset(gid, "Study") is None
        choices = await autocomplete_sub(fake, "admin", "preset-remove", {"name": "hor"}, "name")
        assert [c["value"] for c in choices] == ["Horror game"]
        shown = await (await slash_sub(fake, "admin", "show", {})).wait_original()
        assert "Horror game" in shown.text() and "1:00" in shown.text()
        removed = await slash_sub(fake, "admin", "preset-remove", {"name": "Horror game"})
        assert "Removed preset" in (await removed.wait_original()).text()
        assert store.guild_presets(gid) == []
