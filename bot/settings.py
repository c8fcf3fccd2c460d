"""Bot settings from the environment (and a ``.env`` file via python-dotenv).

The Discord token is a secret: it is never logged, and ``repr(settings)`` masks it.
Every variable is documented in ``.env.example``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from bot.ratelimit import Rate
from engine.errors import UserInputError
from engine.limits import Limits, LimitsError, env_number, env_text


class SettingsError(UserInputError):
    """A setting is missing or malformed (message says which variable and what is expected)."""


@dataclass(frozen=True)
class Settings:
    token: str = field(default="", repr=False)
    dev_guild_id: int | None = None
    backend: str = "auto"  # auto | musicgen | arranger
    model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    worker: str = "process"  # run the model in a child process (keeps torch out of the bot) or "thread"
    per_user_jobs: int = 2
    max_queue: int = 50  # per server
    max_total_queue: int = 1000  # the whole engine, all servers together
    max_duration: float = 120.0  # seconds a user may ask for
    max_samples: int = 4
    max_file_bytes: int = 2_000_000  # documents for /bgm-from-text
    # music-making actions per member (per server) and per server; the defaults match the store's
    # GUILD_DEFAULTS so /admin limits shows what is enforced. Rate(0) turns a limit off.
    user_rate: Rate = Rate(6, 60.0)
    guild_rate: Rate = Rate(30, 60.0)
    data_dir: Path = Path("var")
    store_path: Path | None = None  # default data_dir / "textunes.db"
    audio_format: str = "mp3"
    progress_interval: float = 2.0  # seconds between progress edits (Discord rate-limits edits)
    job_timeout: float = 600.0
    log_level: str = "INFO"
    # start the analysis process (it loads the text models) before going online, instead of on the
    # first /bgm-from-text; either way the models live in that process, never in the bot's
    preload_text: bool = True
    # reading + analysing one document, in the analysis process: wall-clock limit and the memory it
    # may map beyond the loaded models; going over either fails that request with a clear message
    analysis_seconds: float = 30.0
    analysis_memory_mb: int = 1500
    # audio kept on disk (MB; 0 = no cap): the oldest non-favourite tracks go first, at start and daily
    max_stored_mb: float = 2048.0

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "token")
        return f"Settings(token={'***' if self.token else ''!r}, {shown})"

    @property
    def store_file(self) -> Path:
        return self.store_path or self.data_dir / "textunes.db"

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, dotenv_path: str | Path | None = None
    ) -> Settings:
        """Read settings from ``env`` (default ``os.environ`` overlaid on ``.env``)."""
        if env is None:
            from dotenv import dotenv_values

            file_values = dotenv_values(dotenv_path) if dotenv_path else dotenv_values()
            # the real environment wins over the .env file
            env = {**{k: v for k, v in file_values.items() if v is not None}, **os.environ}

        def text(name: str, default: str | None = None) -> str | None:
            value = env_text(env, name)
            return default if value is None else value

        def number(name: str, default, kind=int):
            try:
                return env_number(env, name, default, kind)
            except LimitsError as exc:
                raise SettingsError(str(exc)) from None

        def flag(name: str, default: bool) -> bool:
            raw = text(name)
            if raw is None:
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise SettingsError(f"{name} must be 1 or 0 (true/false), got {raw!r}.")

        try:  # the caps: one reader for the bot, the CLI and the engine's service
            limits = Limits.from_env(env)
        except LimitsError as exc:
            raise SettingsError(str(exc)) from None

        backend = (text("TEXTUNES_BACKEND", "auto") or "auto").lower()
        if backend not in ("auto", "musicgen", "arranger"):
            raise SettingsError(f"TEXTUNES_BACKEND must be auto, musicgen or arranger, got {backend!r}.")
        audio_format = (text("TEXTUNES_AUDIO_FORMAT", "mp3") or "mp3").lower()
        if audio_format not in ("mp3", "ogg"):
            raise SettingsError(f"TEXTUNES_AUDIO_FORMAT must be mp3 or ogg, got {audio_format!r}.")
        worker = (text("TEXTUNES_WORKER", "process") or "process").lower()
        if worker not in ("process", "thread"):
            raise SettingsError(f"TEXTUNES_WORKER must be process or thread, got {worker!r}.")
        store = text("TEXTUNES_STORE")
        return cls(
            token=text("DISCORD_TOKEN", "") or "",
            dev_guild_id=number("DEV_GUILD_ID", None),
            backend=backend,
            model=text("TEXTUNES_MODEL"),
            device=text("TEXTUNES_DEVICE", "auto") or "auto",
            dtype=text("TEXTUNES_DTYPE", "auto") or "auto",
            worker=worker,
            per_user_jobs=limits.jobs_per_user,
            max_queue=limits.queue_size,
            max_total_queue=limits.total_queue,
            max_duration=limits.max_duration,
            max_samples=limits.max_samples,
            max_file_bytes=limits.max_file_bytes,
            user_rate=Rate(*limits.user_rate) if limits.user_rate[0] else Rate(0),
            guild_rate=Rate(*limits.guild_rate) if limits.guild_rate[0] else Rate(0),
            data_dir=Path(text("TEXTUNES_DATA_DIR", "var") or "var"),
            store_path=Path(store) if store else None,
            audio_format=audio_format,
            progress_interval=number("TEXTUNES_PROGRESS_INTERVAL", 2.0, float),
            job_timeout=number("TEXTUNES_JOB_TIMEOUT", 600.0, float),
            log_level=(text("TEXTUNES_LOG_LEVEL", "INFO") or "INFO").upper(),
            preload_text=flag("TEXTUNES_PRELOAD_TEXT", True),
            analysis_seconds=number("TEXTUNES_ANALYSIS_SECONDS", 30.0, float),
            analysis_memory_mb=number("TEXTUNES_ANALYSIS_MEMORY_MB", 1500),
            max_stored_mb=0.0
            if text("TEXTUNES_MAX_STORED_MB") == "0"
            else number("TEXTUNES_MAX_STORED_MB", 2048.0, float),
        )

    def require_token(self) -> str:
        if not self.token:
            raise SettingsError(
                "DISCORD_TOKEN is not set. Put it in the environment or in a .env file "
                "(see .env.example); create one at https://discord.com/developers/applications."
            )
        return self.token
