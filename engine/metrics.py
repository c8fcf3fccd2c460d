"""Prometheus metrics for operators (queue, batches, latency, workers, failures) on TEXTUNES_METRICS_PORT."""

from __future__ import annotations

import logging
import os
import threading

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("textunes.engine")

QUEUE_LENGTH = Gauge("textunes_queue_length", "Jobs waiting in the fair queue (not running)")
RUNNING_JOBS = Gauge("textunes_running_jobs", "Jobs handed to an executor and not finished")
WORKERS = Gauge("textunes_workers", "Executors that can take batches (device workers or live remote workers)")
BATCH_SIZE = Histogram(
    "textunes_batch_size", "Jobs per dispatched batch", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32)
)
JOB_LATENCY = Histogram(
    "textunes_job_latency_seconds",
    "Seconds from submit to a finished job",
    ["state"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200),
)
JOB_FAILURES = Counter("textunes_job_failures_total", "Jobs that failed, by reason code", ["reason"])
WORKER_BATCHES = Counter(
    "textunes_worker_batches_total", "Batches a remote worker finished, by how", ["result"]
)
WORKER_BATCH_SECONDS = Histogram(
    "textunes_worker_batch_seconds",
    "Seconds a remote worker spent on one batch",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)

_started_port: int | None = None
_lock = threading.Lock()


def serve_from_env(env: str = "TEXTUNES_METRICS_PORT") -> int | None:
    """Expose /metrics on the port named by ``env`` (once per process); the port, or None if unset."""
    global _started_port
    raw = (os.environ.get(env) or "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        log.error("%s must be a port number, not %r; metrics are off", env, raw)
        return None
    with _lock:
        if _started_port is None:
            addr = os.environ.get("TEXTUNES_METRICS_ADDR", "0.0.0.0")
            start_http_server(port, addr=addr)
            _started_port = port
            log.info("metrics on http://%s:%d/metrics", addr, port)
    return _started_port
