"""Durable store: jobs, tracks (audio on disk), favorites, user/guild settings, guild catalogue.

    store = Store.open("var/textunes.db")               # applies numbered migrations (store/migrations)
    job = store.create_job(user_id="42", request=spec_to_request(spec, samples=2), guild_id="7")
    store.mark_running(job.id); ...; rec = store.add_track(job.id, track); store.mark_done(job.id)
    job = await store.aio.get_job(job.id)               # the same methods, awaited, on the store's thread

Why it looks like this:

* sqlite (WAL) via sqlite-utils, one connection per ``Store`` guarded by a re-entrant lock, so any
  thread may call it safely; async code uses ``store.aio``, which runs each call on one thread the
  store owns. Anything that must be atomic across *processes* (migrations, a front end's claims)
  is a single conditional UPDATE or an IMMEDIATE transaction.
* Requests are stored as JSON so a job can be rebuilt (``job_spec``) and requeued after a restart.
* Audio lives in ``files_dir`` under generated names (never a user-supplied name); the row keeps the
  sha256, the exact frame count and the spec, so ``load_track`` returns the same shape after a restart.
* The store knows nothing of any front end: where and how a job's result is posted lives in the
  front end's own tables in the same file (``connection()`` / ``transaction()`` lend it the
  connection under the store's lock; the bot's is ``bot.delivery.ledger``).

One module per concern: ``db`` (connection, transactions, migrations), ``records`` (dataclasses and
their JSON), ``jobs``, ``tracks``, ``retention``, ``settings``, ``catalogue``; ``Store`` combines them.
"""

from __future__ import annotations

import functools

from engine.store.aio import AsyncStore, add_async_methods
from engine.store.catalogue import CatalogueMixin
from engine.store.db import Migration, StoreBase, available_migrations, migrate, schema_version
from engine.store.jobs import JobsMixin
from engine.store.records import (
    AUDIO_FORMATS,
    CATEGORY_KINDS,
    FINISHED_STATES,
    JOB_KIND,
    JOB_STATES,
    GuildCategory,
    GuildPreset,
    JobRecord,
    SettingsError,
    StoreError,
    TrackFileMissing,
    TrackRecord,
    UnknownTrack,
    spec_from_dict,
    spec_from_request,
    spec_to_dict,
    spec_to_request,
)
from engine.store.retention import RetentionMixin, RetentionPolicy, run_retention_forever
from engine.store.settings import (
    GUILD_DEFAULTS,
    MAX_ALLOWED_CHANNELS,
    MAX_GUILD_CATEGORIES,
    MAX_GUILD_PRESETS,
    MAX_NAME_CHARS,
    MAX_PRESET_ITEMS,
    USER_DEFAULTS,
    SettingsMixin,
)
from engine.store.tracks import TracksMixin

__all__ = [
    "AUDIO_FORMATS",
    "CATEGORY_KINDS",
    "FINISHED_STATES",
    "GUILD_DEFAULTS",
    "JOB_KIND",
    "JOB_STATES",
    "MAX_ALLOWED_CHANNELS",
    "MAX_GUILD_CATEGORIES",
    "MAX_GUILD_PRESETS",
    "MAX_NAME_CHARS",
    "MAX_PRESET_ITEMS",
    "USER_DEFAULTS",
    "AsyncStore",
    "GuildCategory",
    "GuildPreset",
    "JobRecord",
    "Migration",
    "RetentionPolicy",
    "SettingsError",
    "Store",
    "StoreError",
    "TrackFileMissing",
    "TrackRecord",
    "UnknownTrack",
    "available_migrations",
    "migrate",
    "run_retention_forever",
    "schema_version",
    "spec_from_dict",
    "spec_from_request",
    "spec_to_dict",
    "spec_to_request",
]


class Store(JobsMixin, TracksMixin, RetentionMixin, SettingsMixin, CatalogueMixin, StoreBase):
    """The persistent state of one TexTuneS deployment. Thread-safe; one per process is enough."""

    @functools.cached_property
    def aio(self) -> AsyncStore:
        """The async face: ``await store.aio.<method>(...)`` runs on this store's own thread."""
        return AsyncStore(self)


add_async_methods(Store, skip=("close", "connection", "transaction"))  # sync-only
