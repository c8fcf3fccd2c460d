"""The Discord bot: a ``commands.Bot`` subclass that owns the store, the job engine and the cogs.

Like RoboDanny, ``setup_hook`` loads one extension per feature. The bot never touches a model:
it submits requests to ``engine.jobs.JobEngine`` and streams progress back to Discord.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from discord.ext import commands

from bot import logs
from bot.delivery.recovery import finish_interrupted_delivery, report_given_up, resume_job
from bot.replies import NO_MENTIONS
from bot.settings import Settings
from engine.jobs import EngineConfig, JobEngine
from engine.store import Store

log = logging.getLogger("textunes.bot")

EXTENSIONS = (
    "bot.cogs.bgm",
    "bot.cogs.text",
    "bot.cogs.regenerate",
    "bot.cogs.buttons",
    "bot.cogs.queue",
    "bot.cogs.library",
    "bot.cogs.admin",
)


class TexTuneSBot(commands.Bot):
    def __init__(
        self, settings: Settings, *, engine_config: EngineConfig | None = None, sync_only: bool = False
    ) -> None:
        intents = discord.Intents.default()  # guild reactions are in the defaults; no privileged intents
        logs.install([settings.token])  # before discord.py logs its first route
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            # nobody is pinged unless a message says so itself (only its owner: bot.replies.mention_only)
            allowed_mentions=NO_MENTIONS,
        )
        self.settings = settings
        self.sync_only = sync_only
        settings.store_file.parent.mkdir(parents=True, exist_ok=True)
        self.store = Store.open(settings.store_file)
        self.engine = JobEngine(
            engine_config
            or EngineConfig(
                backend=settings.backend,
                model=settings.model,
                device=settings.device,
                dtype=settings.dtype,
                worker=settings.worker,
                max_queue=settings.max_queue,
                per_user_limit=settings.per_user_jobs,
                max_samples=settings.max_samples,
                job_timeout=settings.job_timeout,
            )
        )
        self._analyzer: Any = None
        self._analyzer_lock = asyncio.Lock()
        self.background: set[asyncio.Task] = set()

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.sync_only:  # `textunes bot --sync` needs the command tree, not the model
            return
        if self.settings.preload_text:  # before the gateway connects: nobody waits on a frozen loop
            await self.preload_text_models()
        await self.engine.start()
        log.info("engine ready: %s", self.engine.describe())
        # What the last process left unfinished. Sorted out here, before the gateway connects, so no
        # new job can be taken for an old one; the Discord calls then run in the background.
        # 1. killed while posting (claimed, not delivered): tracks are stored, never regenerate them;
        #    look on Discord whether the post landed (recover_unfinished leaves these alone)
        claimed = await asyncio.to_thread(self.store.claimed_undelivered)
        # 2. queued or running: run again, deliver once; or stopped after too many attempts
        requeue, gave_up = await asyncio.to_thread(self.store.recover_unfinished)
        for job in claimed:
            self.spawn(finish_interrupted_delivery(self, job))
        for job in gave_up:
            log.warning("job %s gave up after %s attempts", job.id, job.attempts)
            self.spawn(report_given_up(self, job))  # the user sees why, once
        for job in requeue:
            self.spawn(resume_job(self, job))

    def spawn(self, coro) -> asyncio.Task:
        """Run ``coro`` in the background, keeping a reference so it is not garbage-collected."""
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def analyzer(self):
        """The text analyser, loaded once (off the event loop) on first use."""
        async with self._analyzer_lock:
            if self._analyzer is None:
                from engine.text.analyzer import default_analyzer

                self._analyzer = await asyncio.to_thread(default_analyzer)
            return self._analyzer

    async def preload_text_models(self) -> None:
        from engine.text.summary import get_kiwi

        await self.analyzer()
        await asyncio.to_thread(get_kiwi)
        log.info("text models loaded")

    async def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        try:
            if not self.sync_only:
                await self.engine.stop()
        finally:
            await super().close()
            self.store.close()


def create_bot(
    settings: Settings, *, engine_config: EngineConfig | None = None, sync_only: bool = False
) -> TexTuneSBot:
    """Build the bot without starting it (used by ``textunes bot`` and the tests)."""
    return TexTuneSBot(settings, engine_config=engine_config, sync_only=sync_only)
