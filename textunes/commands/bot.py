"""``textunes bot``: run the Discord bot; ``textunes bot --sync [--guild ID]`` publishes its slash commands.

Syncing is a separate, explicit step because Discord rate-limits it; running the bot never syncs.
The token comes from ``DISCORD_TOKEN`` (environment or ``.env``) and is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bot",
        help="run the Discord bot (DISCORD_TOKEN from the environment or .env)",
        description=(
            "Run the TexTuneS Discord bot. Settings come from the environment or a .env file "
            "(see .env.example). Use --sync once after installing or changing commands."
        ),
    )
    p.add_argument(
        "--sync",
        action="store_true",
        help="publish the slash commands to Discord and exit (global, or to --guild for instant updates)",
    )
    p.add_argument(
        "--guild", type=int, metavar="ID", help="with --sync: sync to this server only (default DEV_GUILD_ID)"
    )
    p.add_argument(
        "--global",
        dest="global_",
        action="store_true",
        help="with --sync: sync globally even if DEV_GUILD_ID is set",
    )
    p.add_argument("--env-file", metavar="PATH", help="read settings from this .env file (default ./.env)")
    p.add_argument("--backend", choices=("auto", "musicgen", "arranger"), help="override TEXTUNES_BACKEND")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace):
    from bot.settings import Settings

    settings = Settings.from_env(dotenv_path=args.env_file)
    if args.backend:
        settings = settings.with_(backend=args.backend)
    return settings


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    token = settings.require_token()  # friendly error (exit 2) when missing; never echoed
    if args.sync:
        guild_id = None if args.global_ else (args.guild or settings.dev_guild_id)
        names, where = asyncio.run(sync_commands(settings, guild_id))
        print(f"synced {len(names)} commands {where}: {', '.join('/' + n for n in names)}")
        if guild_id is None:
            print("global commands can take up to an hour to appear; use --guild ID while developing")
        return 0
    import discord

    discord.utils.setup_logging(level=getattr(logging, settings.log_level, logging.INFO), root=True)
    try:
        asyncio.run(run_bot(settings, token))
    except KeyboardInterrupt:
        pass
    return 0


async def run_bot(settings, token: str) -> None:
    """Connect and serve until interrupted; the engine is stopped on the way out."""
    import discord

    from bot.bot import create_bot

    bot = create_bot(settings)
    try:
        async with bot:
            await bot.start(token)
    except discord.LoginFailure:
        print("error: Discord rejected DISCORD_TOKEN (reset it in the developer portal).", file=sys.stderr)
        raise SystemExit(2) from None


async def sync_commands(settings, guild_id: int | None) -> tuple[list[str], str]:
    """Log in over REST only (no gateway, no engine, no model) and publish the command tree."""
    import discord

    from bot.bot import EXTENSIONS, create_bot

    bot = create_bot(settings)

    async def load_commands_only() -> None:
        # the real setup_hook would start the engine and requeue jobs; syncing needs only the cogs
        for extension in EXTENSIONS:
            await bot.load_extension(extension)

    bot.setup_hook = load_commands_only  # type: ignore[method-assign]
    try:
        await bot.login(settings.require_token())
        if guild_id is not None:
            guild = discord.Object(guild_id)
            bot.tree.copy_global_to(guild=guild)
            synced = await bot.tree.sync(guild=guild)
            where = f"to guild {guild_id}"
        else:
            synced = await bot.tree.sync()
            where = "globally"
    except discord.LoginFailure:
        print("error: Discord rejected DISCORD_TOKEN (reset it in the developer portal).", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        await bot.http.close()
        bot.store.close()
    return sorted(command.name for command in synced), where
