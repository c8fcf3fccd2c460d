"""``textunes bot``: syncing commands through the fake Discord, and friendly errors without a token."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_discord import FakeDiscord
from textunes.cli import main

SECRET = "fake-token-that-must-never-be-printed"
EXPECTED = {"bgm", "bgm-from-text", "queue", "cancel", "categories"}


@pytest.fixture(autouse=True)
def root_logging_restored() -> Iterator[None]:
    """`textunes bot` installs discord.py's root log handler on pytest's captured stderr; put the
    root logger back so later tests neither log into a closed stream nor collect other loggers' INFO."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def fake_in_thread() -> Iterator[FakeDiscord]:
    """The fake on its own loop in a thread, so the CLI's own ``asyncio.run`` can talk to it."""
    import discord.gateway
    import discord.http

    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeDiscord()
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
    fake.point_discord_py_here()
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, token: str | None) -> Path:
    for name in ("DISCORD_TOKEN", "DEV_GUILD_ID", "TEXTUNES_STORE"):
        monkeypatch.delenv(name, raising=False)
    if token is not None:
        monkeypatch.setenv("DISCORD_TOKEN", token)
    monkeypatch.setenv("TEXTUNES_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("TEXTUNES_BACKEND", "arranger")
    env_file = tmp_path / ".env"
    env_file.write_text("")  # never pick up a developer's real .env
    return env_file


def test_sync_to_a_guild_publishes_every_command_and_hides_the_token(
    fake_in_thread: FakeDiscord,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    env_file = _env(monkeypatch, tmp_path, SECRET)
    code = main(["bot", "--sync", "--guild", str(fake_in_thread.guild_id), "--env-file", str(env_file)])
    out = capsys.readouterr()
    assert code == 0
    synced = {c["name"] for c in fake_in_thread.synced_commands[fake_in_thread.guild_id]}
    assert EXPECTED <= synced, synced
    assert None not in fake_in_thread.synced_commands  # nothing went global
    assert str(fake_in_thread.guild_id) in out.out and "/bgm" in out.out
    assert SECRET not in out.out + out.err
    assert not fake_in_thread.identify_payloads  # REST only: syncing never opens the gateway
    bgm = next(c for c in fake_in_thread.synced_commands[fake_in_thread.guild_id] if c["name"] == "bgm")
    options = {o["name"]: o for o in bgm["options"]}
    # genre/mood may come from a server preset instead, so neither is required; all are autocompleted
    assert all(
        options[name].get("autocomplete") is True for name in ("genre", "mood", "tempo", "duration", "preset")
    )
    assert not options["genre"].get("required")


def test_sync_without_a_guild_is_global(
    fake_in_thread: FakeDiscord,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    env_file = _env(monkeypatch, tmp_path, SECRET)
    assert main(["bot", "--sync", "--env-file", str(env_file)]) == 0
    out = capsys.readouterr()
    synced = {c["name"] for c in fake_in_thread.synced_commands[None]}
    assert EXPECTED <= synced, synced
    assert fake_in_thread.guild_id not in fake_in_thread.synced_commands
    assert SECRET not in out.out + out.err


def test_missing_token_is_a_friendly_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    env_file = _env(monkeypatch, tmp_path, None)
    code = main(["bot", "--env-file", str(env_file)])
    err = capsys.readouterr().err
    assert code == 2
    assert "DISCORD_TOKEN is not set" in err and ".env.example" in err


def test_env_example_documents_every_setting() -> None:
    """Each variable Settings.from_env reads (itself or through Limits.from_env) appears in .env.example."""
    import inspect
    import re

    import bot.settings
    import engine.limits

    source = inspect.getsource(bot.settings.Settings.from_env)
    source += inspect.getsource(engine.limits.Limits.from_env)  # the caps' one reader
    read = set(re.findall(r'(?:text|number|rate)\("([A-Z_]+)"', source))
    example = (Path(__file__).parents[1] / ".env.example").read_text()
    assert read and len(read) >= 15
    missing = {name for name in read if not re.search(rf"^#?\s*{name}=", example, re.M)}
    assert not missing, missing


def test_the_bot_package_never_imports_torch() -> None:
    """bot/ talks to the engine's asyncio API only; importing every cog must not pull in torch."""
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib, bot, textunes.commands.bot\n"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(bot.__path__, 'bot.')]\n"
        "from bot.bot import EXTENSIONS\n"
        "import importlib\n"
        "[importlib.import_module(e) for e in EXTENSIONS]\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    root = Path(__file__).parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY=\n" in done.stdout, done.stdout
