"""The real bot in its own OS process, pointed at a FakeDiscord that runs in the test process.

    python -m tests.bot_process --base-url http://127.0.0.1:PORT --data-dir DIR [--worker process]

Fault-injection tests start it with ``asyncio.create_subprocess_exec``, SIGKILL it mid-queue and
start another one on the same data dir. It builds the bot exactly like ``tests.bot_harness.running_bot``
(arranger backend, ``progress_interval=0``), prints ``TEXTUNES_BOT_READY`` on stdout once the
gateway session is ready, and closes cleanly on SIGTERM/SIGINT (jobs stay queued in the store).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

READY_LINE = "TEXTUNES_BOT_READY"


def point_discord_py_at(base_url: str) -> None:
    """Same redirection as ``FakeDiscord.point_discord_py_here``, from the fake's base URL alone."""
    import discord.gateway
    import discord.http
    import yarl

    from tests.fake_discord.server import API_PREFIX

    url = yarl.URL(base_url)
    discord.http.Route.BASE = base_url.rstrip("/") + API_PREFIX
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://{url.host}:{url.port}/gateway")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bot_process", description=__doc__)
    parser.add_argument("--base-url", required=True, help="the fake Discord, e.g. http://127.0.0.1:PORT")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--worker", choices=("thread", "process"), default="thread")
    parser.add_argument("--per-user-jobs", type=int, default=2)
    parser.add_argument("--max-queue", type=int, default=50)
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    from bot.bot import create_bot
    from bot.settings import Settings
    from engine.jobs import EngineConfig

    settings = Settings(
        token="fake-token",
        data_dir=args.data_dir,
        backend="arranger",
        worker=args.worker,
        progress_interval=0.0,
        per_user_jobs=args.per_user_jobs,
        max_queue=args.max_queue,
    )
    bot = create_bot(
        settings,
        engine_config=EngineConfig(
            backend="arranger",
            worker=args.worker,
            max_queue=settings.max_queue,
            per_user_limit=settings.per_user_jobs,
        ),
    )

    async def on_ready() -> None:
        print(READY_LINE, flush=True)  # the parent waits for this line before driving the bot

    bot.add_listener(on_ready)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    runner = asyncio.create_task(bot.start(settings.token))
    stopper = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        await bot.close()  # graceful: unfinished jobs stay queued in the store for the next start
        (outcome,) = await asyncio.gather(runner, return_exceptions=True)
    if isinstance(outcome, Exception):
        raise outcome  # e.g. the fake refused the login: exit non-zero with the traceback


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    point_discord_py_at(args.base_url)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
