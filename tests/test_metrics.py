"""``--metrics-port``: Prometheus metrics scraped from real worker processes, counted against the jobs they ran."""

import socket
import subprocess
import sys
import urllib.request

import testjobs
from conftest import REPO_DIR, wait_until
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, Retry
from rq.job import JobStatus

QUEUE = "metered"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample on ``/metrics``, by name and sorted labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def series(samples: dict, name: str) -> dict[tuple, float]:
    return {labels: found for (sample, labels), found in samples.items() if sample == name}


def listening(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


def test_a_two_process_pool_serves_one_endpoint_whose_counts_match_the_jobs(connection, redis_url, worker_process):
    port = free_port()
    worker = worker_process(QUEUE, "-u", redis_url, "-n", "2", "-c", "5", "--metrics-port", str(port))
    wait_until(lambda: listening(port), timeout=20, what="metrics endpoint")
    wait_until(lambda: len(series(scrape(port), "rq_gevent_pool_size")) == 2, timeout=20, what="both processes")
    before = scrape(port)
    assert value(before, "rq_gevent_jobs_started_total", queue=QUEUE) == 0  # nothing counted before a job ran

    queue = Queue(QUEUE, connection=connection)
    finished = [queue.enqueue(testjobs.green_sleep, 0.05, n) for n in range(30)]
    failed = [queue.enqueue(testjobs.fail, "metered failure") for _ in range(5)]
    retried = [queue.enqueue(testjobs.fail, "fails twice", retry=Retry(max=1)) for _ in range(4)]
    every = finished + failed + retried
    wait_until(
        lambda: all(job.get_status(refresh=True) in (JobStatus.FINISHED, JobStatus.FAILED) for job in every),
        timeout=30,
        what="every job ended",
    )
    wait_until(
        lambda: value(scrape(port), "rq_gevent_jobs_ended_total", queue=QUEUE, outcome="failed") == 9,
        timeout=10,
        what="the last failure counted",
    )
    samples = scrape(port)
    runs = len(finished) + len(failed) + 2 * len(retried)
    assert value(samples, "rq_gevent_jobs_started_total", queue=QUEUE) == runs
    assert value(samples, "rq_gevent_jobs_ended_total", queue=QUEUE, outcome="finished") == len(finished)
    assert value(samples, "rq_gevent_jobs_ended_total", queue=QUEUE, outcome="failed") == len(failed) + len(retried)
    assert value(samples, "rq_gevent_jobs_requeued_total", queue=QUEUE, reason="retry") == len(retried)
    assert value(samples, "rq_gevent_job_duration_seconds_count", queue=QUEUE) == runs
    assert value(samples, "rq_gevent_job_duration_seconds_sum", queue=QUEUE) >= 30 * 0.05
    assert value(samples, "rq_gevent_dequeue_to_start_seconds_count", queue=QUEUE) == runs
    # Per process: two pids, each a pool of 5 with nothing in flight now.
    pools = series(samples, "rq_gevent_pool_size")
    assert sorted(pools.values()) == [5, 5] and all(dict(labels).get("pid") for labels in pools)
    assert sorted(series(samples, "rq_gevent_jobs_in_flight").values()) == [0, 0]
    wait_until(lambda: value(scrape(port), "rq_gevent_event_loop_lag_seconds_count") >= 4, what="loop lag samples")
    assert value(samples, "rq_gevent_redis_errors_total") == 0
    assert value(samples, "rq_gevent_redis_outages_total") == 0
    # The jobs ran in both processes (otherwise "one endpoint for all" would be untested).
    assert len({job.worker_name for job in (j.fetch(j.id, connection=connection) for j in finished)}) == 2

    worker.shut_down()
    assert worker.wait(30) == 0
    # Where it serves is logged once, by the launcher (the worker processes serve nothing).
    assert worker.output().count("Prometheus metrics on") == 1, worker.output()
    assert f"Prometheus metrics on http://0.0.0.0:{port}/metrics (every interface)" in worker.output()


def test_a_lone_worker_serves_its_own_metrics_and_counts_a_redis_outage(worker_process, tmp_path):
    from rq_gevent.embedded_redis import EmbeddedRedis

    port = free_port()
    with EmbeddedRedis(appendonly=True) as private_redis:
        import redis

        connection = redis.Redis.from_url(private_redis.url)
        worker = worker_process(
            QUEUE, "-u", private_redis.url, "--metrics-port", str(port), "--metrics-host", "127.0.0.1"
        )
        wait_until(lambda: listening(port), timeout=20, what="metrics endpoint")
        job = Queue(QUEUE, connection=connection).enqueue(testjobs.green_sleep, 0, "one")
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=20)
        private_redis.restart(down_for=3)
        wait_until(lambda: value(scrape(port), "rq_gevent_redis_outages_total") >= 1, timeout=30, what="outage")
        samples = scrape(port)
        assert value(samples, "rq_gevent_jobs_ended_total", queue=QUEUE, outcome="finished") == 1
        assert value(samples, "rq_gevent_redis_errors_total") >= 1
        assert value(samples, "rq_gevent_pool_size") == 20  # one process: no pid label
        worker.shut_down()
        assert worker.wait(30) == 0
        assert worker.output().count(f"Serving Prometheus metrics on http://127.0.0.1:{port}/metrics\n") == 1


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rq_gevent", *args], capture_output=True, text=True, timeout=60, cwd=str(REPO_DIR)
    )


def test_a_metrics_port_in_use_is_one_line_before_anything_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for processes in ("1", "2"):
            # Nobody listens on this Redis: the port error must come first.
            result = run_cli("worker", "-n", processes, "-u", "redis://127.0.0.1:1/0", "--metrics-port", str(port),
                             "--metrics-host", "127.0.0.1")  # fmt: skip
            assert result.returncode == 1
            assert result.stderr.strip().splitlines() == [
                f"rq-gevent: error: --metrics-port {port}: cannot listen on 127.0.0.1:{port}: Address already in use"
            ], result.stderr


def test_jobs_in_flight_rise_and_a_stopped_job_counts_as_stopped(connection, redis_url, worker_process):
    from rq.command import send_stop_job_command

    port = free_port()
    worker = worker_process(QUEUE, "-u", redis_url, "-c", "4", "--metrics-port", str(port))
    wait_until(lambda: listening(port), timeout=20, what="metrics endpoint")
    queue = Queue(QUEUE, connection=connection)
    long_jobs = [queue.enqueue(testjobs.green_sleep, 60, n) for n in range(3)]
    wait_until(lambda: value(scrape(port), "rq_gevent_jobs_in_flight") == 3, timeout=20, what="3 jobs in flight")
    send_stop_job_command(connection, long_jobs[0].id)
    wait_until(
        lambda: value(scrape(port), "rq_gevent_jobs_ended_total", queue=QUEUE, outcome="stopped") == 1,
        timeout=20,
        what="the stopped job counted",
    )
    samples = scrape(port)
    assert value(samples, "rq_gevent_jobs_in_flight") == 2
    assert value(samples, "rq_gevent_jobs_ended_total", queue=QUEUE, outcome="failed") == 0
    assert value(samples, "rq_gevent_jobs_started_total", queue=QUEUE) == 3
    worker.shut_down(cold=True)
    assert worker.wait(30) == 0


def test_a_returned_retry_past_its_max_counts_once_as_failed(connection, redis_url, worker_process):
    """rq 2.3.3 fails such a job through handle_job_failure from inside handle_job_retry, rq 2.12 and 3
    inside handle_job_retry itself: either way, one failure and one requeue per retry."""
    port = free_port()
    worker = worker_process(QUEUE, "-u", redis_url, "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    wait_until(lambda: listening(port), timeout=20, what="metrics endpoint")
    job = Queue(QUEUE, connection=connection).enqueue(testjobs.always_retry, 2)
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.FAILED, timeout=20, what="rq to give up")
    wait_until(
        lambda: value(scrape(port), "rq_gevent_jobs_ended_total", queue=QUEUE, outcome="failed") >= 1,
        timeout=10,
        what="the failure counted",
    )
    samples = scrape(port)
    assert value(samples, "rq_gevent_jobs_started_total", queue=QUEUE) == 3
    assert value(samples, "rq_gevent_jobs_requeued_total", queue=QUEUE, reason="retry") == 2
    assert value(samples, "rq_gevent_jobs_ended_total", queue=QUEUE, outcome="failed") == 1
    worker.shut_down()
    assert worker.wait(30) == 0
