"""The Discord bot: a ``commands.Bot`` subclass that builds the engine's ``MusicService`` and the cogs.

Like RoboDanny, ``setup_hook`` loads one extension per feature. The bot never touches a model or a
document: it admits and submits requests to ``engine.service.MusicService`` (which runs generation in
the job engine's worker and document analysis in its sandbox process) and shows their outputs.
"""

from __future__ import annotations

import asyncio
import logging

import discord
from discord.ext import commands

from bot import logs
from bot.delivery.ledger import DeliveryLedger
from bot.delivery.recovery import (
    finish_interrupted_delivery,
    follow_resumed,
    post_undelivered,
    report_given_up,
)
from bot.limits import operator_limits
from bot.replies import NO_MENTIONS
from bot.settings import Settings
from engine.jobs import EngineConfig, JobEngine
from engine.service import MusicService, RetentionPolicy
from engine.store import Store
from engine.text.sandbox import AnalysisSandbox, SandboxLimits

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
        self.ledger = DeliveryLedger.open(self.store)  # the bot's own table in the same file
        self.engine = JobEngine(
            engine_config
            or EngineConfig(
                backend=settings.backend,
                model=settings.model,
                device=settings.device,
                dtype=settings.dtype,
                worker=settings.worker,
                job_timeout=settings.job_timeout,
                # the engine's bound is the global queue; each server's own is checked by service.admit
                **operator_limits(settings).engine_caps(),
            )
        )
        retention = (
            RetentionPolicy(max_bytes=int(settings.max_stored_mb * 1024 * 1024))
            if settings.max_stored_mb > 0
            else None
        )
        self.service = MusicService(
            self.store,
            self.engine,
            limits=operator_limits(settings),
            audio_format=settings.audio_format,
            retention=retention,  # at start and daily: the size cap, then orphan files
        )
        self.sandbox = AnalysisSandbox(
            SandboxLimits(
                memory_bytes=int(settings.analysis_memory_mb) * 1_000_000,
                wall_seconds=settings.analysis_seconds,
            )
        )
        self.background: set[asyncio.Task] = set()

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.sync_only:  # `textunes bot --sync` needs the command tree, not the model
            return
        # The service starts the engine and recovers what the last process left, before the gateway
        # connects, so no new job can be taken for an old one; the Discord calls run in the background.
        # With preload on, the analysis process loads its models now (MusicService.start starts the
        # sandbox); with it off, the sandbox is handed over after start and spawns on the first document.
        if self.settings.preload_text:
            self.service.analysis = self.sandbox
        recovery = await self.service.start()
        self.service.analysis = self.sandbox
        log.info("engine ready: %s", self.engine.describe())
        # killed while posting (claimed, not delivered): tracks are stored, never regenerate them;
        # look on Discord whether the post landed
        for job in await asyncio.to_thread(self.ledger.claimed_undelivered):
            self.spawn(finish_interrupted_delivery(self, job))
        for job in await asyncio.to_thread(self.ledger.undelivered):  # stored, never claimed: post once
            self.spawn(post_undelivered(self, job))
        for record in recovery.gave_up:
            log.warning("job %s gave up after %s attempts", record.id, record.attempts)
            job = await asyncio.to_thread(self.ledger.job, record.id)
            if job is not None:
                self.spawn(report_given_up(self, job))  # the user sees why, once
        for handle in recovery.resumed:  # queued or running: generated again, delivered once
            self.spawn(follow_resumed(self, handle))

    def spawn(self, coro) -> asyncio.Task:
        """Run ``coro`` in the background, keeping a reference so it is not garbage-collected."""
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        try:
            if not self.sync_only:
                await self.service.close()  # the engine, and the analysis process
            await self.sandbox.close()
        finally:
            await super().close()
            self.store.close()


def create_bot(
    settings: Settings, *, engine_config: EngineConfig | None = None, sync_only: bool = False
) -> TexTuneSBot:
    """Build the bot without starting it (used by ``textunes bot`` and the tests)."""
    return TexTuneSBot(settings, engine_config=engine_config, sync_only=sync_only)
