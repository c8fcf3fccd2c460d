"""Where formed batches run: in this process (default) or on remote workers through Redis Streams."""

from __future__ import annotations

import os

from engine.broker.base import BatchItem, Broker, JobRequest, Outcome, Slot

__all__ = ["BatchItem", "Broker", "JobRequest", "Outcome", "Slot", "broker_url", "make_broker"]


def broker_url(config) -> str | None:
    """The Redis URL to use, from ``EngineConfig.broker_url`` or ``TEXTUNES_BROKER``; None: in process."""
    url = config.broker_url if config.broker_url is not None else os.environ.get("TEXTUNES_BROKER", "")
    url = (url or "").strip()
    if not url or url in ("inprocess", "local"):
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"TEXTUNES_BROKER must be a redis://, rediss:// or unix:// URL, not {url!r}")
    return url


def make_broker(config, stats: dict) -> Broker:
    url = broker_url(config)
    if url is None:
        from engine.broker.local import InProcessBroker

        return InProcessBroker(config, stats)
    from engine.broker.redis_broker import RedisBroker

    return RedisBroker(config, stats, url)
