"""``textunes worker``: a generation worker that pulls batches from the Redis broker (TEXTUNES_BROKER)."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="run a generation worker for the bot on this machine (pulls batches from TEXTUNES_BROKER)",
    )
    p.add_argument("--broker", default=None, help="redis://host:6379/0 (default: $TEXTUNES_BROKER)")
    p.add_argument("--device", default="auto", help="cuda:0, cuda:1, cpu or auto (default auto)")
    p.add_argument("--backend", default="auto", choices=["auto", "musicgen", "arranger"])
    p.add_argument("--model", default=None, help="MusicGen model id or local folder")
    p.add_argument("--dtype", default="auto", help="auto, float16, bfloat16, float32")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model (CPU devices)")
    p.add_argument("--max-batch", type=int, default=8, help="most tracks per generate call (default 8)")
    p.add_argument("--name", default="", help="worker name in Redis (default host-pid)")
    p.add_argument(
        "--isolation",
        default="process",
        choices=["process", "thread"],
        help="process: the model runs in a child that is restarted if it crashes (default)",
    )
    p.add_argument("--visibility-timeout", type=float, default=None,
                   help="seconds before a silent worker's batch is reclaimed (default 30)")  # fmt: skip
    p.add_argument(
        "--max-attempts", type=int, default=3, help="deliveries of a batch before it is dead-lettered"
    )
    p.add_argument(
        "--prefix", default=None, help="Redis key prefix (default $TEXTUNES_BROKER_PREFIX or textunes)"
    )
    p.add_argument("--factory", default=None, help=argparse.SUPPRESS)  # module:function (device) -> backend
    p.set_defaults(func=run)


def _factory(args: argparse.Namespace):
    import functools
    import importlib

    from engine.broker.local import load_configured_backend

    if args.factory:
        module, _, attr = args.factory.partition(":")
        return getattr(importlib.import_module(module), attr)
    options = {"threads": args.threads} if args.threads else {}
    return functools.partial(load_configured_backend, args.backend, args.model, args.dtype, options)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from engine import metrics
    from engine.broker.redis_worker import RemoteWorker, WorkerOptions
    from engine.errors import UserInputError

    url = args.broker or os.environ.get("TEXTUNES_BROKER", "")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise UserInputError("Give the broker: --broker redis://host:6379/0 or TEXTUNES_BROKER=redis://...")
    logging.basicConfig(
        level=os.environ.get("TEXTUNES_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s"
    )
    env_vis = os.environ.get("TEXTUNES_VISIBILITY_TIMEOUT")
    try:
        visibility = (
            args.visibility_timeout if args.visibility_timeout is not None else float(env_vis or 30.0)
        )
    except ValueError:
        visibility = float("nan")
    if not 0 < visibility <= 86_400:  # also NaN: Redis needs a positive idle time to reclaim after
        raise UserInputError(
            "The visibility timeout is seconds a silent worker keeps its batch: more than 0, at most a day."
        )
    options = WorkerOptions(
        url=url,
        device=args.device,
        name=args.name,
        prefix=args.prefix or os.environ.get("TEXTUNES_BROKER_PREFIX", "textunes"),
        isolation=args.isolation,
        max_batch=args.max_batch,
        visibility_timeout=visibility,
        max_attempts=args.max_attempts,
    )
    metrics.serve_from_env()
    return asyncio.run(RemoteWorker(options, _factory(args)).run())
