"""sync_discuz_user through each backend, against real peers: our UCenter-protocol server (its own
process), a real MariaDB with UCenter's tables, and real PHP running a uc_client."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import wait_until
from jobrun import outcome, queue, run_burst
from rq.job import Job

from jobs.discuz.hashing import make_prepared_hash, verify_password
from jobs.discuz.sync import sync_discuz_user
from jobs.enqueue import enqueue_discuz_sync
from jobs.sealing import seal

# Runs once, not on each rq, Python and server (docs/contributing.md):
# the job module against UCenter, MariaDB and PHP; rq's retries are test_lifecycle's, but those after a delay.
pytestmark = pytest.mark.once

PASSWORD = "Pa55-密码-7f3a"


def enqueue_sync(connection, username: str, email: str, password: str = PASSWORD, **kwargs) -> Job:
    return queue(connection).enqueue(sync_discuz_user, username, email, seal(password), **kwargs)


def php_verifies(php: str, password: str, stored: str, salt: str, charset: str) -> bool:
    """PHP's own check: password_verify for bcrypt, md5(md5(p).salt) for the salted form."""
    script = (
        "$r = json_decode(stream_get_contents(STDIN), true);"
        '$p = $r["charset"] === "utf-8" ? $r["password"] : iconv("UTF-8", $r["charset"], $r["password"]);'
        'echo $r["salt"] === "" ? (password_verify($p, $r["stored"]) ? "yes" : "no")'
        ' : (md5(md5($p) . $r["salt"]) === $r["stored"] ? "yes" : "no");'
    )
    request = json.dumps({"password": password, "stored": stored, "salt": salt, "charset": charset})
    return subprocess.run([php, "-r", script], input=request, capture_output=True, text=True).stdout == "yes"


# --- UCenter HTTP API ---------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "charset"), [("1.6", "utf-8"), ("1.7", "utf-8"), ("1.7", "gbk")])
def test_http_creates_members_and_a_second_run_is_a_success(
    ucenter, worker_process, redis_url, connection, version, charset
):
    peer = ucenter(version, charset)
    jobs = [enqueue_sync(connection, "alice", "alice@example.org"), enqueue_sync(connection, "张三丰", "zs@example.cn")]
    run_burst(worker_process, redis_url, peer.settings())
    assert [outcome(job)[1]["created"] for job in jobs] == [True, True], [outcome(job) for job in jobs]
    members = {member["username"]: member for member in peer.members()}
    assert sorted(members) == ["alice", "张三丰"]
    for member in members.values():
        assert verify_password(PASSWORD, member["password"], member["salt"], charset)
        assert (len(member["salt"]) == 6) == (version == "1.6")

    again = [
        enqueue_sync(connection, "alice", "ALICE@example.org"),
        enqueue_sync(connection, "张三丰", "zs@example.cn"),
    ]
    run_burst(worker_process, redis_url, peer.settings())
    assert [outcome(job) for job in again] == [
        ("finished", {"uid": members["alice"]["uid"], "username": "alice", "created": False}),
        ("finished", {"uid": members["张三丰"]["uid"], "username": "张三丰", "created": False}),
    ]
    assert len(peer.members()) == 2


def test_http_name_owned_by_someone_else_is_a_permanent_conflict(ucenter, worker_process, redis_url, connection):
    peer = ucenter()
    peer.add_member("bob", "bob@elsewhere.net", "their-own-password")
    job = enqueue_sync(connection, "bob", "bob@example.org")
    run_burst(worker_process, redis_url, peer.settings())
    status, reason = outcome(job)
    assert status == "failed" and job.number_of_retries is None
    assert "ForumConflict: the forum username belongs to another account" in reason
    (member,) = peer.members()
    assert verify_password("their-own-password", member["password"], member["salt"], "utf-8")
    assert member["email"] == "bob@elsewhere.net"


@pytest.mark.parametrize(
    ("username", "email", "code"),
    [
        ("alice; rm -rf /", "a@example.org", "-1 (invalid username)"),
        ("$(id)", "a@example.org", "-1 (invalid username)"),
        ("x" * 10240, "a@example.org", "-1 (invalid username)"),
        ("Guest42", "a@example.org", "-1 (invalid username)"),
        ("八个汉字八个汉字", "a@example.org", "-1 (invalid username)"),  # 16 "characters" by UCenter's count
        ("admin_spam", "a@example.org", "-2 (username contains a censored word)"),
        ("carol", "not-an-address", "-4 (invalid e-mail address)"),
        ("carol", "carol@blocked.example", "-5 (e-mail domain not allowed)"),
    ],
)
def test_http_rejected_input_fails_at_once_with_the_code(
    ucenter, worker_process, redis_url, connection, username, email, code
):
    peer = ucenter("1.7", "utf-8", "--censor", "spam", "--email-domain", "example.org")
    job = enqueue_sync(connection, username, email)
    run_burst(worker_process, redis_url, peer.settings())
    status, reason = outcome(job)
    assert status == "failed" and job.number_of_retries is None
    assert reason == f"jobs.discuz.errors.ForumRejected: UCenter refused the registration: {code}"
    assert peer.members() == []


def test_password_the_forum_charset_cannot_store_fails_clearly(ucenter, worker_process, redis_url, connection):
    peer = ucenter("1.7", "gbk")
    job = enqueue_sync(connection, "quinn", "quinn@example.org", password="wörd-🙂-x")
    run_burst(worker_process, redis_url, peer.settings())
    assert outcome(job) == (
        "failed",
        "jobs.outcomes.PermanentError: the password has characters the forum charset gbk cannot store",
    )
    assert peer.members() == []


def test_http_shell_metacharacters_are_stored_as_plain_data(ucenter, worker_process, redis_url, connection):
    peer = ucenter()
    marker = Path.home() / "q"
    marker.unlink(missing_ok=True)
    job = enqueue_sync(connection, "x;touch$HOME/q", "x@example.org")
    run_burst(worker_process, redis_url, peer.settings())
    assert outcome(job)[0] == "finished"
    assert [member["username"] for member in peer.members()] == ["x;touch$HOME/q"]
    assert not marker.exists()


def test_http_wrong_key_is_a_configuration_error_without_retries(ucenter, worker_process, redis_url, connection):
    peer = ucenter()
    job = enqueue_sync(connection, "dave", "dave@example.org")
    run_burst(worker_process, redis_url, {**peer.settings(), "UC_KEY": "not-the-key"})
    status, reason = outcome(job)
    assert status == "failed" and job.number_of_retries is None
    assert "ForumConfigError: UCenter refused the request: 'Invalid input' (check UC_KEY" in reason


def test_http_error_pages_and_5xx_are_retried(ucenter, worker_process, redis_url, connection):
    peer = ucenter()
    peer.queue_faults("html", 503)
    job = enqueue_sync(connection, "erin", "erin@example.org")
    worker = run_burst(worker_process, redis_url, peer.settings())
    assert outcome(job)[0] == "finished" and job.number_of_retries == 2
    assert "HTML page instead of a result (attempt 1 of 3)" in worker.output()
    assert "answered HTTP 503 (attempt 2 of 3)" in worker.output()
    assert [member["username"] for member in peer.members()] == ["erin"]


def test_http_over_tls_keeps_a_bounded_pool_of_connections_alive(ucenter, worker_process, redis_url, connection):
    """Four jobs at a time share the pool's two connections: 16 API calls, at most two TLS handshakes."""
    peer = ucenter(tls=True)
    jobs = [enqueue_sync(connection, f"pooled{n}", f"pooled{n}@example.org") for n in range(8)]
    before = peer.stats()
    run_burst(worker_process, redis_url, {**peer.settings(), "DISCUZ_HTTP_POOL_SIZE": "2"}, "-c", "4")
    after = peer.stats()
    assert [outcome(job)[1]["created"] for job in jobs] == [True] * 8, [outcome(job) for job in jobs]
    assert after["api_requests"] - before["api_requests"] == 16
    # The workers' connections, and the one of the second stats() call.
    assert after["connections"] - before["connections"] <= 3, (before, after)
    assert after["tls_handshakes"] - before["tls_handshakes"] <= 3, (before, after)


def test_http_tls_certificate_is_verified_against_the_system_cas_by_default(
    ucenter, worker_process, redis_url, connection
):
    peer = ucenter(tls=True)
    settings = peer.settings()
    del settings["DISCUZ_HTTP_CA_FILE"]  # the peer's CA is not one the system trusts
    job = enqueue_sync(connection, "untrusted", "untrusted@example.org")
    run_burst(worker_process, redis_url, settings)
    status, reason = outcome(job)
    assert status == "failed" and job.number_of_retries == 2
    assert "UCenter unreachable: SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED]" in reason, reason
    assert peer.stats()["api_requests"] == 0 and peer.members() == []


# uc_server's database error page (its halt()) quotes the SQL, with the member's username and e-mail,
# and MySQL's own message: none of it may reach the job's error or the log.
PAGE_TEXT = ("SQL:", "INSERT INTO", "[Table]", "Duplicate entry", "MySQL Query Error", "Lost connection to MySQL")


def assert_page_not_quoted(texts: list[str], username: str, email: str) -> None:
    for text in texts:
        for quoted in (username, email, *PAGE_TEXT):
            assert quoted not in text, quoted


def test_http_duplicate_entry_in_ucenters_database_resolves_to_the_existing_account(
    ucenter, worker_process, redis_url, connection
):
    """Two registrations of a name raced inside UCenter: ours got MySQL 1062 from its unique key, after
    the other had added the member.  Like a rerun: the same e-mail is the account, not a failure."""
    peer = ucenter()
    peer.queue_faults(None, "halt:1062")  # the lookup finds nobody; the registration loses the race
    job = enqueue_sync(connection, "racer1062", "racer1062@example.org")
    worker = run_burst(worker_process, redis_url, peer.settings(), "--verbose")
    (member,) = peer.members()
    assert outcome(job) == ("finished", {"uid": member["uid"], "username": "racer1062", "created": False})
    assert job.number_of_retries is None
    assert peer.stats()["api_requests"] == 3  # lookup, registration (the error page), lookup again
    assert_page_not_quoted([worker.output(), job.exc_info or ""], "racer1062", "racer1062@example.org")


def test_http_lost_connection_in_ucenters_database_is_retried(ucenter, worker_process, redis_url, connection):
    peer = ucenter()
    peer.queue_faults(None, "halt:2013")
    job = enqueue_sync(connection, "retry2013", "retry2013@example.org")
    worker = run_burst(worker_process, redis_url, peer.settings(), "--verbose")
    status, result = outcome(job)
    assert status == "finished" and result["created"] is True and job.number_of_retries == 1
    assert (
        "UCenter's database unavailable: MySQL 2013: Lost connection to the server during a query (attempt 1 of 3)"
        in worker.output()
    )
    assert [member["username"] for member in peer.members()] == ["retry2013"]
    assert_page_not_quoted([worker.output(), job.exc_info or ""], "retry2013", "retry2013@example.org")


@pytest.mark.parametrize("faults", [("halt:1054",), (None, "halt:1054")], ids=["lookup", "registration"])
def test_http_other_database_error_fails_at_once_without_blaming_the_key(
    ucenter, worker_process, redis_url, connection, faults
):
    peer = ucenter()
    peer.queue_faults(*faults)
    job = enqueue_sync(connection, "column1054", "column1054@example.org")
    worker = run_burst(worker_process, redis_url, peer.settings(), "--verbose")
    status, reason = outcome(job)
    assert status == "failed" and job.number_of_retries is None
    assert reason == (
        "jobs.discuz.errors.ForumConfigError: UCenter's database refused us: "
        "MySQL 1054: Unknown column (check DISCUZ_UC_VERSION against the tables)"
    )
    assert "UC_KEY" not in job.exc_info and peer.members() == []
    assert_page_not_quoted([worker.output(), job.exc_info], "column1054", "column1054@example.org")


@pytest.mark.parametrize("fault", ["xml-entity", "xml-bomb"])
def test_http_lookup_answer_with_a_dtd_is_not_a_result(ucenter, worker_process, redis_url, connection, fault):
    """An XML parser expanding entities would take xml-entity's answer for the member (its entity spells
    the e-mail) and spend memory on xml-bomb's; both are refused, not parsed."""
    peer = ucenter()
    peer.queue_faults(fault)
    job = enqueue_sync(connection, "entity", "entity@example.org")
    run_burst(worker_process, redis_url, peer.settings())
    status, reason = outcome(job)
    assert status == "failed" and job.number_of_retries is None
    assert reason.startswith("jobs.discuz.errors.ForumConfigError: UCenter answered ")
    assert "bytes that are not a result (not copied" in reason
    assert "entity@example.org" not in job.exc_info and "lol" not in job.exc_info
    assert peer.members() == []


def test_unsealed_password_is_refused_without_echoing_it(ucenter, worker_process, redis_url, connection):
    peer = ucenter()
    job = queue(connection).enqueue(sync_discuz_user, "frank", "frank@example.org", PASSWORD)
    run_burst(worker_process, redis_url, peer.settings())
    status, reason = outcome(job)
    assert status == "failed"
    assert reason.endswith("password must be sealed with jobs.sealing.seal() at enqueue time, not a str; "
                           "the worker erased the job's arguments")  # fmt: skip
    assert PASSWORD not in (job.exc_info or "")
    with pytest.raises(TypeError, match="seal the password"):
        enqueue_discuz_sync(queue(connection), 1, "frank", "frank@example.org", password=PASSWORD)


def test_enqueue_helper_gives_one_job_per_user(connection):
    first = enqueue_discuz_sync(queue(connection), 42, "grace", "grace@example.org", password=seal(PASSWORD))
    second = enqueue_discuz_sync(queue(connection), 42, "grace", "grace@example.org", password=seal(PASSWORD))
    assert first.id == second.id == "discuz-sync-42"
    assert queue(connection).count == 1
    assert first.description == "sync_discuz_user(user_id=42)"


# --- direct database ----------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "charset"), [("1.6", "utf-8"), ("1.7", "utf-8"), ("1.6", "gbk")])
def test_database_inserts_member_rows_that_php_verifies(
    forum_database, php, worker_process, redis_url, connection, version, charset
):
    forum = forum_database(version, charset)
    jobs = [enqueue_sync(connection, "heidi", "heidi@example.org", regip="203.0.113.9")]
    jobs.append(enqueue_sync(connection, "李四", "lisi@example.cn"))
    run_burst(worker_process, redis_url, forum.settings())
    assert [outcome(job)[0] for job in jobs] == ["finished", "finished"], [outcome(job) for job in jobs]
    rows = sorted(forum.rows(), key=lambda row: row["username"] != "heidi")
    assert [row["username"] for row in rows] == ["heidi", "李四"]
    assert rows[0]["regip"] == "203.0.113.9" and rows[0]["regdate"] > time.time() - 120
    for row in rows:
        assert (len(row["salt"]) == 6) == (version == "1.6")
        assert row["password"].startswith("$2b$") == (version == "1.7")
        assert php_verifies(php, PASSWORD, row["password"], row["salt"], charset)
        assert not php_verifies(php, PASSWORD + "x", row["password"], row["salt"], charset)
    assert sorted(row["uid"] for row in forum.rows("memberfields")) == sorted(row["uid"] for row in rows)

    again = enqueue_sync(connection, "HEIDI", "heidi@example.org")
    run_burst(worker_process, redis_url, forum.settings())
    assert outcome(again) == ("finished", {"uid": rows[0]["uid"], "username": "heidi", "created": False})
    assert len(forum.rows()) == 2


def test_database_accepts_a_prepared_hash_instead_of_the_password(
    forum_database, php, worker_process, redis_url, connection
):
    forum = forum_database("1.7", "utf-8")
    prepared = make_prepared_hash(PASSWORD, "1.7", "utf-8")
    job = queue(connection).enqueue(sync_discuz_user, "ivan", "ivan@example.org", password_hash=seal(prepared))
    run_burst(worker_process, redis_url, forum.settings())
    assert outcome(job)[0] == "finished"
    (row,) = forum.rows()
    assert row["password"] == prepared and row["salt"] == ""
    assert php_verifies(php, PASSWORD, row["password"], row["salt"], "utf-8")


def test_database_conflict_leaves_the_existing_member_alone(forum_database, worker_process, redis_url, connection):
    forum = forum_database("1.7", "utf-8")
    first = enqueue_sync(connection, "judy", "judy@example.org")
    run_burst(worker_process, redis_url, forum.settings())
    (before,) = forum.rows()
    other = enqueue_sync(connection, "Judy", "someone@else.org", password="another-password")
    run_burst(worker_process, redis_url, forum.settings())
    assert outcome(first)[0] == "finished"
    assert outcome(other)[0] == "failed" and "ForumConflict" in outcome(other)[1]
    assert forum.rows() == [before]


def test_database_access_denied_is_a_configuration_error(forum_database, worker_process, redis_url, connection):
    forum = forum_database("1.7", "utf-8")
    job = enqueue_sync(connection, "ken", "ken@example.org")
    run_burst(worker_process, redis_url, {**forum.settings(), "DISCUZ_DB_PASSWORD": "wrong-db-password"})
    status, reason = outcome(job)
    assert status == "failed" and job.number_of_retries is None
    assert "ForumConfigError: UCenter database refused us: MySQL 1045: Access denied" in reason
    assert "wrong-db-password" not in reason


@pytest.mark.every_version  # a returned Retry with a delay, then rq's scheduler: rq's own code on each version
def test_database_down_mid_job_is_retried_and_creates_one_member(
    forum_database, mariadb, worker_process, redis_url, connection
):
    forum = forum_database("1.7", "utf-8")
    blocker = mariadb.admin(forum.name)
    blocker.cursor().execute("LOCK TABLES pre_ucenter_members WRITE")
    job = enqueue_sync(connection, "laura", "laura@example.org")
    worker = worker_process(
        "-u",
        redis_url,
        "--with-scheduler",
        "jobs",
        env={**forum.settings(), "JOBS_RETRY_INTERVALS": "1,1,1,1,1,1,1,1,1,1"},
    )
    wait_until(lambda: job.get_status(refresh=True) == "started", timeout=20, what="the job to start")
    wait_until(lambda: _waiting_on_lock(mariadb), timeout=20, what="the job's query to wait on the lock")
    mariadb.kill()
    wait_until(lambda: "UCenter database unavailable: MySQL" in worker.output(), timeout=20, what="a retry")
    mariadb.start()
    wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=40, what="the retried job")
    assert [row["username"] for row in forum.rows()] == ["laura"]
    assert len(forum.rows("memberfields")) == 1


def _waiting_on_lock(mariadb) -> bool:
    with mariadb.admin() as admin, admin.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.processlist WHERE state LIKE '%lock%'")
        return cursor.fetchone()[0] > 0


# --- the site's uc_client through PHP -----------------------------------------------------------


@pytest.mark.parametrize("charset", ["utf-8", "gbk"])
def test_php_uc_client_creates_the_member_and_is_idempotent(
    ucenter, php_uc_client, worker_process, redis_url, connection, charset
):
    peer = ucenter("1.7", charset)
    jobs = [enqueue_sync(connection, "mallory", "m@example.org"), enqueue_sync(connection, "王五", "ww@example.cn")]
    run_burst(worker_process, redis_url, php_uc_client(peer))
    assert [outcome(job)[1]["created"] for job in jobs] == [True, True], [outcome(job) for job in jobs]
    members = sorted(peer.members(), key=lambda member: member["username"] != "mallory")
    assert [member["username"] for member in members] == ["mallory", "王五"]
    assert all(verify_password(PASSWORD, m["password"], m["salt"], charset) for m in members)
    again = enqueue_sync(connection, "王五", "ww@example.cn")
    run_burst(worker_process, redis_url, php_uc_client(peer))
    assert outcome(again) == ("finished", {"uid": members[1]["uid"], "username": "王五", "created": False})


def test_php_call_shows_no_secret_in_the_process_list(
    ucenter, php_uc_client, worker_process, redis_url, connection, tmp_path
):
    peer = ucenter()
    pause = tmp_path / "pause"
    pause.touch()
    job = enqueue_sync(connection, "niaj", "niaj@example.org")
    worker = worker_process(
        "-u", redis_url, "--burst", "jobs", env={**php_uc_client(peer), "UC_TEST_PAUSE_FILE": str(pause)}
    )
    try:
        # The lookup's bridge process ends at once; the one that stays is register's, paused holding the password.
        wait_until(
            lambda: _bridge_pids(pause) and _bridge_pids(pause) == _bridge_pids(pause, after=0.5),
            timeout=20,
            what="PHP register",
        )
        listing = _process_list()
        ours = _bridge_pids(pause)
        bridge_lines = [line for line in listing.splitlines() if line.split()[0] in ours]
        assert bridge_lines and all(line.split()[-1].endswith("uc_client_bridge.php") for line in bridge_lines)
        assert PASSWORD not in listing
        environments = [_read_environment(pid) for pid in ours]  # unreadable: an error, not an empty environment
        pause_variable = f"UC_TEST_PAUSE_FILE={pause}".encode()
        assert all(pause_variable in environment.split(b"\0") for environment in environments)  # the read saw them
        assert not any(PASSWORD.encode() in environment for environment in environments)
    finally:  # a failed check leaves no bridge paused behind it
        pause.unlink()
    assert worker.wait(30) == 0
    assert outcome(job)[0] == "finished"


def test_php_timeout_kills_the_process_and_retries(
    ucenter, php_uc_client, worker_process, redis_url, connection, tmp_path
):
    peer = ucenter()
    pause = tmp_path / "pause"
    pause.touch()
    job = enqueue_sync(connection, "olivia", "olivia@example.org")
    settings = {**php_uc_client(peer), "UC_TEST_PAUSE_FILE": str(pause), "DISCUZ_PHP_TIMEOUT": "1"}
    run_burst(worker_process, redis_url, settings)
    status, reason = outcome(job)
    assert status == "failed" and job.number_of_retries == 2
    assert reason.endswith("uc_client PHP call killed after 1 s")
    assert not _bridge_pids(pause), "a killed PHP call is still running"


def test_php_missing_uc_client_is_a_configuration_error(ucenter, php_uc_client, worker_process, redis_url, connection):
    peer = ucenter()
    job = enqueue_sync(connection, "peggy", "peggy@example.org")
    run_burst(worker_process, redis_url, {**php_uc_client(peer), "DISCUZ_PHP_UC_CLIENT": "/nonexistent"})
    status, reason = outcome(job)
    assert status == "failed" and job.number_of_retries is None
    assert "DISCUZ_PHP_CONFIG or DISCUZ_PHP_UC_CLIENT does not exist" in reason


def _process_list() -> str:
    return subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True, check=True).stdout


def _bridge_pids(pause: Path, after: float = 0.0) -> set[str]:
    """This test's PHP bridge processes: other test sessions may run bridges of their own at the same time.

    Each test's pause file path is unique and the bridge inherits it in its environment.
    """
    time.sleep(after)
    marker = f"UC_TEST_PAUSE_FILE={pause}".encode()
    pids = {line.split()[0] for line in _process_list().splitlines() if "uc_client_bridge.php" in line}
    return {pid for pid in pids if marker in _environment_of(pid).split(b"\0")}


def _environment_of(pid: str) -> bytes:
    """For picking processes out of the list: one that ended or is not ours to read has none."""
    try:
        return _read_environment(pid)
    except OSError:
        return b""


def _read_environment(pid: str) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()
