"""``textunes bot``: run the Discord bot (token from the environment or .env, never printed)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bot", help="run the Discord bot (DISCORD_TOKEN from the environment or .env)")
    p.add_argument("--sync", action="store_true", help="sync the slash commands with Discord, then exit")
    p.add_argument(
        "--guild",
        type=int,
        help="with --sync: sync to this server only (instant; global takes up to an hour)",
    )
    p.add_argument("--env-file", help="read settings from this file instead of ./.env")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    import discord
    from dotenv import find_dotenv, load_dotenv

    from bot.bot import create_bot
    from bot.settings import Settings

    # the engine reads some settings itself (TEXTUNES_BROKER, TEXTUNES_METRICS_PORT, retention):
    # put .env's values into the environment too; the real environment still wins
    load_dotenv(args.env_file or find_dotenv(usecwd=True), override=False)
    settings = Settings.from_env(dotenv_path=args.env_file)
    token = settings.require_token()
    discord.utils.setup_logging(level=getattr(logging, settings.log_level, logging.INFO))
    from bot import logs

    logs.install([token])  # also on the handler setup_logging just added
    bot = create_bot(settings, sync_only=args.sync)

    if args.sync:

        async def sync() -> None:
            async with bot:
                await bot.login(token)  # no gateway: REST only; setup_hook loads the cogs
                guild = discord.Object(args.guild) if args.guild else None
                if guild is not None:
                    bot.tree.copy_global_to(guild=guild)
                synced = await bot.tree.sync(guild=guild)
                where = f"server {args.guild}" if guild else "all servers (may take up to an hour to show)"
                print(f"synced {len(synced)} commands to {where}: {', '.join('/' + c.name for c in synced)}")

        asyncio.run(sync())
        return 0

    print(f"starting TexTuneS bot ({settings.backend} backend, store {settings.store_file})")
    bot.run(token, log_handler=None)
    return 0
