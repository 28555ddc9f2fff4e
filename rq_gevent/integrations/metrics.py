"""Prometheus metrics of a worker (``--metrics-port``), across all the launcher's processes.

Each worker process writes its samples with ``prometheus_client``'s multiprocess mode into the
directory named by ``PROMETHEUS_MULTIPROC_DIR`` (the launcher makes one and hands it on); the
launcher serves them all on ``/metrics``, so one port answers for the whole pool.  A single worker
process without a launcher serves its own.  Without ``--metrics-port`` nothing here is imported and
:data:`NO_METRICS` takes every call for nothing.

Only counters, gauges and histograms: each sample is a few microseconds of the job's own greenlet,
and scraping reads the files, not the worker.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.running import RunningJob

DIRECTORY_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Event-loop lag is sampled this often: a greenlet that sleeps LAG_INTERVAL and measures how late
# it woke up (the launcher's hub watchdog watches the same loop, through a file it touches).
LAG_INTERVAL = 0.5
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, float("inf"))
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, float("inf"))


class NoMetrics:
    """What the worker calls when metrics are off: nothing."""

    def start(self, pool_size: int) -> None:
        pass

    def stop(self) -> None:
        pass

    def started(self, running: RunningJob) -> None:
        """The job's function is about to run."""

    def function_ended(self, running: RunningJob) -> None:
        """Its function is over (called again when the greenlet ends: counted once)."""

    def ended(self, queue_name: str, outcome: str) -> None:
        """rq recorded the outcome: finished, failed or stopped."""

    def failure_recorded(self, queue_name: str, status: Any) -> None:
        """rq's failure handling ran; the job's status tells a failure from a retry."""

    def requeued(self, queue_name: str, reason: str) -> None:
        """The job is back on its queue (or scheduled): retry, cold_shutdown, never_started."""

    def redis_failed(self, starts_outage: bool) -> None:
        pass

    def redis_recovered(self) -> None:
        pass


NO_METRICS = NoMetrics()


class PrometheusMetrics(NoMetrics):
    """The worker's metrics, named ``rq_gevent_*``; a gauge carries a ``pid`` label per process."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        per_queue = ["queue"]
        self.jobs_started = Counter("rq_gevent_jobs_started", "Jobs whose function started.", per_queue)
        self.jobs_ended = Counter(
            "rq_gevent_jobs_ended", "Jobs by how they ended: finished, failed or stopped.", ["queue", "outcome"]
        )
        self.jobs_requeued = Counter(
            "rq_gevent_jobs_requeued",
            "Jobs put back on their queue: retry (rq's Retry), cold_shutdown, never_started (Redis failed).",
            ["queue", "reason"],
        )
        self.duration = Histogram(
            "rq_gevent_job_duration_seconds", "Time in the job's function.", per_queue, buckets=DURATION_BUCKETS
        )
        self.start_latency = Histogram(
            "rq_gevent_dequeue_to_start_seconds",
            "From the job's dequeue to its function's start.",
            per_queue,
            buckets=LATENCY_BUCKETS,
        )
        self.in_flight = Gauge("rq_gevent_jobs_in_flight", "Jobs running now.", multiprocess_mode="liveall")
        self.pool_size = Gauge(
            "rq_gevent_pool_size", "Jobs the process runs at once at most.", multiprocess_mode="liveall"
        )
        self.loop_lag = Histogram(
            "rq_gevent_event_loop_lag_seconds",
            f"How late a greenlet sleeping {LAG_INTERVAL} s woke up: time the event loop was blocked.",
            buckets=LAG_BUCKETS,
        )
        self.redis_errors = Counter("rq_gevent_redis_errors", "Redis calls of the worker that failed.")
        self.redis_outages = Counter("rq_gevent_redis_outages", "Times Redis became unreachable.")
        self.redis_down = Gauge(
            "rq_gevent_redis_unreachable", "1 while Redis is unreachable from the process.", multiprocess_mode="liveall"
        )
        self._lag_watch: Any = None
        self._per_queue: dict[str, tuple[Any, Any, Any]] = {}
        self._ended: dict[tuple[str, str], Any] = {}

    def start(self, pool_size: int) -> None:
        import gevent

        self.pool_size.set(pool_size)
        self.in_flight.set(0)
        self.redis_down.set(0)
        self._lag_watch = gevent.spawn(self._watch_loop)

    def stop(self) -> None:
        if self._lag_watch is not None:
            self._lag_watch.kill(block=False)

    def _watch_loop(self) -> None:
        import gevent

        while True:
            before = time.monotonic()
            gevent.sleep(LAG_INTERVAL)
            self.loop_lag.observe(max(0.0, time.monotonic() - before - LAG_INTERVAL))

    def _queue(self, name: str) -> tuple[Any, Any, Any]:
        """The started counter, latency and duration histograms of one queue (``labels()`` once)."""
        children = self._per_queue.get(name)
        if children is None:
            children = self._per_queue[name] = (
                self.jobs_started.labels(name),
                self.start_latency.labels(name),
                self.duration.labels(name),
            )
        return children

    def started(self, running: RunningJob) -> None:
        running.function_started_at = now = time.monotonic()
        started, latency, _ = self._queue(running.queue.name)
        started.inc()
        latency.observe(now - running.admitted_at)
        self.in_flight.inc()

    def function_ended(self, running: RunningJob) -> None:
        if running.function_started_at is None:
            return
        self.in_flight.dec()
        self._queue(running.queue.name)[2].observe(time.monotonic() - running.function_started_at)
        running.function_started_at = None

    def ended(self, queue_name: str, outcome: str) -> None:
        counter = self._ended.get((queue_name, outcome))
        if counter is None:
            counter = self._ended[queue_name, outcome] = self.jobs_ended.labels(queue_name, outcome)
        counter.inc()

    def failure_recorded(self, queue_name: str, status: Any) -> None:
        status = str(getattr(status, "value", status))
        if status in ("failed", "stopped"):
            self.ended(queue_name, status)
        elif status in ("queued", "scheduled"):
            self.requeued(queue_name, "retry")

    def requeued(self, queue_name: str, reason: str) -> None:
        self.jobs_requeued.labels(queue_name, reason).inc()

    def redis_failed(self, starts_outage: bool) -> None:
        self.redis_errors.inc()
        if starts_outage:
            self.redis_outages.inc()
            self.redis_down.set(1)

    def redis_recovered(self) -> None:
        self.redis_down.set(0)


def serve(port: int, host: str, directory: str | None = None) -> Any:
    """Serve ``/metrics`` on ``host:port`` in a thread; with ``directory``, every process's samples
    there.  A port already taken is a one-line :class:`~rq_gevent.options.ConfigError`."""
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

    from ..options import ConfigError

    registry = REGISTRY
    if directory is not None:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        raise ConfigError(f"--metrics-port {port}: cannot listen on {host}:{port}: {error.strerror or error}") from None
    return server


def address(server: Any) -> str:
    """Where :func:`serve`'s ``server`` answers, as a URL to scrape."""
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    anywhere = " (every interface)" if host in ("0.0.0.0", "::") else ""
    return f"http://{shown}:{port}/metrics{anywhere}"


def process_exited(directory: str, pid: int) -> None:
    """Drop a dead worker process's live gauges (its counters stay in the totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path=directory)


def in_multiprocess_mode() -> bool:
    return bool(os.environ.get(DIRECTORY_ENV))
