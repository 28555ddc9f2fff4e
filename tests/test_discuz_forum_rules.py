"""Every account sync_discuz_user creates can log in on the forum itself: the rules Discuz! and UCenter
apply, checked on each backend against real PHP and a real MariaDB.

UCenter's side is our PHP stand-in (tests/php/ucenter, uc_client and uc_server; no Discuz! code), run
by PHP on MariaDB tables as each UCenter version installs them.  "Logs in on the forum" is Discuz!'s
own path: it refuses a password ``addslashes`` changes, then calls ``uc_user_login(addslashes(name))``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_until
from jobrun import outcome, queue, run_burst
from peer_fixtures import PHP_UC_CLIENT, PHP_UC_CLIENT_16, REPO_DIR
from peers.processes import free_port
from rq.job import Job

from jobs.discuz.hashing import salted_md5
from jobs.discuz.sync import sync_discuz_user
from jobs.sealing import seal

pytestmark = pytest.mark.once

PASSWORD = "Pa55-密码-7f3a"
BACKENDS = ("database", "php", "http")


@pytest.fixture
def settings_for(php, php_uc_server, tmp_path):
    """``settings_for(backend, forum)``: the job's settings for ``backend`` on ``forum``'s tables."""

    def settings(backend: str, forum, uc_client: Path = PHP_UC_CLIENT, server_env: dict | None = None) -> dict:
        if backend == "database":
            return forum.settings()
        if backend == "php":
            return forum.uc_client_settings(php, tmp_path, uc_client)
        return php_uc_server(forum, server_env or {}).settings()

    return settings


def sync(connection, username: str, email: str, password: str = PASSWORD, **kwargs) -> Job:
    return queue(connection).enqueue(sync_discuz_user, username, email, seal(password), **kwargs)


# --- 1. usernames, stored as Discuz!'s own registration stores them ----------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("version", "charset", "usernames"),
    [("1.7", "utf-8", ["ro\\ot", "a\\\\b"]), ("1.7", "gbk", ["淺田真", "ro\\ot"]), ("1.6", "gbk", ["淺田真", "嘰嘰x"])],
)
def test_usernames_discuz_escapes_are_stored_as_given_and_log_in(
    forum_database, settings_for, php, worker_process, redis_url, connection, backend, version, charset, usernames
):
    forum = forum_database(version, charset)
    settings = settings_for(backend, forum)
    jobs = [sync(connection, name, f"user{index}@example.org") for index, name in enumerate(usernames)]
    run_burst(worker_process, redis_url, settings)
    assert [outcome(job)[0] for job in jobs] == ["finished"] * len(jobs), [outcome(job) for job in jobs]
    by_name = {row["username"]: row for row in forum.rows()}
    assert sorted(by_name) == sorted(usernames)  # each stored exactly as given
    rows = [by_name[name] for name in usernames]
    for row, name in zip(rows, usernames, strict=True):
        assert forum.login(php, name, PASSWORD) == row["uid"], name  # Discuz!'s own login path

    again = [sync(connection, name, f"user{index}@example.org") for index, name in enumerate(usernames)]
    run_burst(worker_process, redis_url, settings)
    assert [outcome(job) for job in again] == [
        ("finished", {"uid": row["uid"], "username": row["username"], "created": False}) for row in rows
    ]
    assert len(forum.rows()) == len(usernames)


def test_a_name_longer_than_15_once_escaped_is_refused(forum_database, worker_process, redis_url, connection):
    forum = forum_database("1.7", "utf-8")
    job = sync(connection, "abcdefghijklm\\n", "long@example.org")  # 15 characters, 16 as UCenter counts
    run_burst(worker_process, redis_url, forum.settings())
    assert outcome(job) == ("failed", "jobs.discuz.errors.ForumRejected: UCenter refused the registration: "
                                      "-1 (invalid username)")  # fmt: skip
    assert forum.rows() == []


# --- 2. passwords the forum's own forms refuse --------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "password"),
    [("utf-8", "it's-secret"), ("utf-8", 'say "hi"'), ("utf-8", "back\\slash"), ("gbk", "淺-secret")],
)
def test_passwords_discuz_refuses_are_refused_unless_allowed(
    forum_database, php, worker_process, redis_url, connection, charset, password
):
    forum = forum_database("1.7", charset)
    refused = sync(connection, "quote1", "quote1@example.org", password)
    run_burst(worker_process, redis_url, forum.settings())
    status, reason = outcome(refused)
    assert status == "failed" and refused.number_of_retries is None
    assert reason.startswith("jobs.discuz.errors.ForumRejected: UCenter refused the registration: the password holds")
    assert "profile_passwd_illegal" in reason and password not in reason
    assert forum.rows() == []

    allowed = sync(connection, "quote2", "quote2@example.org", password)
    run_burst(worker_process, redis_url, {**forum.settings(), "DISCUZ_ALLOW_API_ONLY_PASSWORDS": "1"})
    assert outcome(allowed)[0] == "finished"
    (row,) = forum.rows()
    assert forum.login(php, "quote2", password, discuz=False) == row["uid"]  # uc_client's API logs in
    assert forum.login(php, "quote2", password, discuz=True) == -3  # the forum's own form refuses it


@pytest.mark.parametrize("password", ["0", "   ", " 0 "])
def test_passwords_empty_as_ucenter_reads_them_are_refused_even_when_api_only_ones_are_allowed(
    forum_database, worker_process, redis_url, connection, password
):
    forum = forum_database("1.7", "utf-8")
    job = sync(connection, "emptypw", "emptypw@example.org", password)
    run_burst(worker_process, redis_url, {**forum.settings(), "DISCUZ_ALLOW_API_ONLY_PASSWORDS": "1"})
    status, reason = outcome(job)
    assert status == "failed" and "the password is empty (or only spaces, or 0) as UCenter reads it" in reason
    assert forum.rows() == []


def test_a_rerun_for_an_existing_member_succeeds_whatever_its_password(
    forum_database, worker_process, redis_url, connection
):
    forum = forum_database("1.7", "utf-8")
    first = sync(connection, "older", "older@example.org", "it's-secret")
    run_burst(worker_process, redis_url, {**forum.settings(), "DISCUZ_ALLOW_API_ONLY_PASSWORDS": "1"})
    again = sync(connection, "older", "older@example.org", "it's-secret")
    run_burst(worker_process, redis_url, forum.settings())  # the rule is for new accounts: this one exists
    uid = outcome(first)[1]["uid"]
    assert outcome(again) == ("finished", {"uid": uid, "username": "older", "created": False})


def test_a_32_word_character_password_is_refused_on_16_only(forum_database, php, worker_process, redis_url, connection):
    password = "Abcdefghijklmnopqrstuvwxyz_01234"
    old, new = forum_database("1.6", "utf-8"), forum_database("1.7", "utf-8")
    on_old, on_new = sync(connection, "md5like", "md5like@example.org", password), None
    run_burst(worker_process, redis_url, old.settings())
    on_new = sync(connection, "md5like", "md5like@example.org", password)
    run_burst(worker_process, redis_url, new.settings())
    assert outcome(on_old) == (
        "failed",
        "jobs.discuz.errors.ForumRejected: UCenter refused the registration: UCenter 1.6 takes a password of "
        "32 letters, digits or _ for an md5 hash at login: it could never log in",
    )
    assert old.rows() == []
    assert outcome(on_new)[0] == "finished"
    assert new.login(php, "md5like", password) == new.rows()[0]["uid"]
    # The instrument: the stand-in's 1.6 login really takes such a password for an md5.
    with old.server.admin(old.name) as admin, admin.cursor() as cursor:
        cursor.execute(
            "INSERT INTO pre_ucenter_members (username, password, email, salt) VALUES (%s, %s, %s, %s)",
            ("md5like", salted_md5(password.encode(), "abcdef"), "md5like@example.org", "abcdef"),
        )
        admin.commit()
    assert old.login(php, "md5like", password) == -2


# --- 3 and 4. database trouble inside uc_client and uc_server -----------------------------------------


@pytest.mark.parametrize("backend", ["php", "http"])
def test_a_duplicate_entry_race_inside_ucenter_resolves_to_the_existing_account(
    forum_database, settings_for, mariadb, worker_process, redis_url, connection, tmp_path, backend
):
    forum = forum_database("1.7", "utf-8")
    pause = tmp_path / "pause"
    pause.touch()
    hook = {"UC_TEST_PAUSE_FILE": str(pause)}  # read by uc_client (php) or the uc_server process (http)
    settings = settings_for(backend, forum, server_env=hook)
    job = sync(connection, "racer", "racer@example.org")
    worker = worker_process("-u", redis_url, "--burst", "jobs", env={**settings, **hook})
    try:
        wait_until(lambda: Path(f"{pause}.reached").exists(), timeout=20, what="UCenter's checks to pass")
        with mariadb.admin(forum.name) as admin, admin.cursor() as cursor:  # the other registration wins
            cursor.execute(
                "INSERT INTO pre_ucenter_members (username, password, email, salt) VALUES (%s, 'x', %s, '')",
                ("racer", "racer@example.org"),
            )
            admin.commit()
    finally:
        pause.unlink()
    assert worker.wait(30) == 0, worker.output()
    (row,) = forum.rows()
    assert outcome(job) == ("finished", {"uid": row["uid"], "username": "racer", "created": False})
    assert "Duplicate" not in worker.output() and "racer@example.org" not in (job.exc_info or "")


@pytest.mark.parametrize("backend", ["php", "http"])
def test_an_unreachable_ucenter_database_is_retried(
    forum_database, settings_for, worker_process, redis_url, connection, backend
):
    forum = forum_database("1.7", "utf-8")
    forum.php_db_host = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings = settings_for(backend, forum)
    job = sync(connection, "later", "later@example.org")
    worker = run_burst(worker_process, redis_url, settings)
    status, reason = outcome(job)
    assert status == "failed" and job.number_of_retries == 2, (status, reason)
    # uc_client names the connect error; PHP's server answers uc_server's uncaught Error with HTTP 500.
    expected = "UCenter answered HTTP 500" if backend == "http" else "uc_client's database unavailable: MySQL 2002"
    assert expected in reason, reason
    assert "(attempt 1 of 3)" in worker.output()


@pytest.mark.parametrize("fault", ["halt:2013", "unreachable"])
def test_uc_client_in_post_mode_retries_what_ucenter_could_not_do(
    ucenter, php_uc_client, worker_process, redis_url, connection, fault
):
    peer = ucenter()
    settings = php_uc_client(peer)
    if fault == "unreachable":
        settings = {**settings, "DISCUZ_PHP_CONFIG": _with_api(settings["DISCUZ_PHP_CONFIG"], free_port())}
    else:
        peer.queue_faults(None, fault)  # the lookup answers, the registration meets a lost connection
    job = sync(connection, "postmode", "postmode@example.org")
    worker = run_burst(worker_process, redis_url, settings)
    status, reason = outcome(job)
    if fault == "unreachable":
        assert status == "failed" and job.number_of_retries == 2
        assert reason.endswith("uc_client got nothing from UCenter's API (UC_API in DISCUZ_PHP_CONFIG)"), reason
    else:
        assert status == "finished" and job.number_of_retries == 1, (status, reason)
        assert "UCenter's database unavailable: MySQL 2013" in worker.output()  # uc_server's, named as such
        assert [member["username"] for member in peer.members()] == ["postmode"]


def test_uc_client_in_post_mode_resolves_a_duplicate_entry_race(
    ucenter, php_uc_client, worker_process, redis_url, connection
):
    peer = ucenter()
    peer.queue_faults(None, "halt:1062")  # the other registration wins inside UCenter
    job = sync(connection, "race1062", "race1062@example.org")
    run_burst(worker_process, redis_url, php_uc_client(peer))
    (member,) = peer.members()
    assert outcome(job) == ("finished", {"uid": member["uid"], "username": "race1062", "created": False})


def test_what_uc_client_prints_after_the_answer_is_ignored(
    forum_database, php, worker_process, redis_url, connection, tmp_path
):
    forum = forum_database("1.7", "utf-8")
    settings = forum.uc_client_settings(php, tmp_path)
    client = tmp_path / "chatty_uc_client"
    client.mkdir()
    (client / "client.php").write_text(
        "<?php\nregister_shutdown_function(function () { echo 'note sent'; flush(); });\n"
        f"require '{PHP_UC_CLIENT}/client.php';\n"
    )
    job = sync(connection, "chatty", "chatty@example.org")
    run_burst(worker_process, redis_url, {**settings, "DISCUZ_PHP_UC_CLIENT": str(client)})
    assert outcome(job)[0] == "finished", outcome(job)


def _with_api(config: str, port: int) -> str:
    """A copy of the uc_client config file whose UC_API is a port nothing listens on."""
    text = Path(config).read_text()
    copy = Path(config).with_name("unreachable_" + Path(config).name)
    copy.write_text(re.sub(r"define\('UC_API', [^)]*\);", f"define('UC_API', 'http://127.0.0.1:{port}');", text))
    return str(copy)


# --- 5. prepared hashes the target can verify ---------------------------------------------------------


@pytest.mark.parametrize(("version", "salt", "created"), [("1.7", "abc", False), ("1.7", "abcdefgh", False),
                                                         ("1.7", "abcdef", True), ("1.6", "abc", True)])  # fmt: skip
def test_prepared_hashes_the_target_cannot_verify_are_refused(
    forum_database, php, worker_process, redis_url, connection, version, salt, created
):
    forum = forum_database(version, "utf-8")
    prepared = f"{salted_md5(PASSWORD.encode(), salt)}:{salt}"
    job = queue(connection).enqueue(sync_discuz_user, "hashed", "hashed@example.org", password_hash=seal(prepared))
    run_burst(worker_process, redis_url, forum.settings())
    if created:
        assert outcome(job)[0] == "finished"
        assert forum.login(php, "hashed", PASSWORD) == forum.rows()[0]["uid"]
    else:
        assert outcome(job) == (
            "failed",
            "jobs.discuz.errors.ForumConfigError: the prepared password hash is unusable: "
            "UCenter 1.7 verifies a salted md5 only with a salt of exactly 6 characters",
        )
        assert forum.rows() == []


# --- 6. UCenter 1.6's columns -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_16_columns_an_ipv6_regip_is_cut_and_an_emoji_name_refused(
    forum_database, settings_for, php, worker_process, redis_url, connection, backend
):
    forum = forum_database("1.6", "utf-8")  # utf8mb3, regip char(15), as 1.6 installs
    settings = settings_for(backend, forum)
    address = "2001:db8::1234:5678:9abc"
    ipv6 = sync(connection, "six", "six@example.org", regip=address)
    emoji = sync(connection, "bob🙂x", "bob@example.org")
    run_burst(worker_process, redis_url, settings)
    assert outcome(ipv6)[0] == "finished", outcome(ipv6)
    assert outcome(emoji) == ("failed", "jobs.discuz.errors.ForumRejected: UCenter refused the registration: "
                                        "-1 (invalid username)")  # fmt: skip
    (row,) = forum.rows()
    assert row["regip"] == address[:15]
    assert forum.login(php, "six", PASSWORD) == row["uid"]


def test_the_database_backend_reads_the_tables_own_charset(forum_database, worker_process, redis_url, connection):
    upgraded = forum_database("1.7", "utf-8", mysql_charset="utf8mb3")  # a 1.7 on tables never converted
    job = sync(connection, "bob🙂x", "bob@example.org")
    run_burst(worker_process, redis_url, upgraded.settings())
    assert outcome(job) == ("failed", "jobs.discuz.errors.ForumRejected: UCenter refused the registration: "
                                      "-1 (invalid username)")  # fmt: skip
    full = forum_database("1.7", "utf-8")
    again = sync(connection, "bob🙂x", "bob@example.org")
    run_burst(worker_process, redis_url, full.settings())
    assert outcome(again)[0] == "finished" and [row["username"] for row in full.rows()] == ["bob🙂x"]


# --- 7. an X3.4-era uc_client under PHP 8, and the bridge's diagnostic mode ---------------------------


def test_an_old_uc_client_runs_under_php_8(forum_database, settings_for, php, worker_process, redis_url, connection):
    forum = forum_database("1.6", "gbk")
    settings = settings_for("php", forum, uc_client=PHP_UC_CLIENT_16)
    job = sync(connection, "老用户", "old@example.org")
    run_burst(worker_process, redis_url, settings)
    assert outcome(job)[0] == "finished", outcome(job)
    assert forum.login(php, "老用户", PASSWORD) == forum.rows()[0]["uid"]
    # The instrument: without the bridge's definition, this uc_client dies under PHP 8.
    bare = subprocess.run(
        [php, "-r", f"define('UC_API', 'x'); require '{PHP_UC_CLIENT_16}/client.php';"], capture_output=True
    )
    assert bare.returncode == 255


def test_diagnostic_mode_shows_what_the_job_withholds(forum_database, php, tmp_path):
    client = tmp_path / "broken_uc_client"
    client.mkdir()
    (client / "client.php").write_text(
        "<?php\nerror_reporting(0);\nfunction uc_user_register() { return 0; }\n"
        "function uc_get_user($u) { return undefined_in_uc_client(); }\n"
    )
    settings = forum_database("1.7", "utf-8").uc_client_settings(php, tmp_path, client)
    run = subprocess.run(
        [sys.executable, "-m", "jobs.discuz.uc_client_php", "--diagnose", "alice"],
        env={**_environment(), **settings},
        capture_output=True,
        text=True,
        cwd=REPO_DIR,
    )
    assert run.returncode == 1
    assert "Call to undefined function undefined_in_uc_client()" in run.stdout
    assert f"{client}/client.php" in run.stdout


def _environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(("DISCUZ_", "UC_"))}


# --- 9. one e-mail, one account, under concurrency ------------------------------------------------------


@pytest.mark.parametrize("backend", ["database", "php"])
def test_concurrent_syncs_of_one_email_create_one_account(
    forum_database, settings_for, php, worker_process, redis_url, connection, tmp_path, backend
):
    forum = forum_database("1.7", "utf-8")  # doublee = 0: one account per e-mail
    settings = settings_for(backend, forum)
    pause = tmp_path / "pause"
    pause.touch()
    jobs = [sync(connection, name, "shared@example.org") for name in ("first", "second")]
    release = threading.Timer(2.0, pause.unlink)
    release.start()
    try:
        run_burst(worker_process, redis_url, {**settings, "UC_TEST_PAUSE_FILE": str(pause)}, "-c", "2")
    finally:
        release.cancel()
        pause.unlink(missing_ok=True)
    outcomes = sorted(outcome(job)[0] for job in jobs)
    assert outcomes == ["failed", "finished"], [outcome(job) for job in jobs]
    assert [row["email"] for row in forum.rows()] == ["shared@example.org"]


def test_the_stand_in_has_the_race_the_locks_close(forum_database, php, tmp_path):
    """The instrument: two registrations at once, outside the job, both pass UCenter's e-mail check."""
    forum = forum_database("1.7", "utf-8")
    pause = tmp_path / "pause"
    pause.touch()
    script = (
        "$r = json_decode(stream_get_contents(STDIN), true);"
        "foreach ($r['defines'] as $k => $v) { define($k, $v); }"
        f"require '{PHP_UC_CLIENT.parent}/ucenter/ucenter.php';"
        "echo uct_register($r['name'], 'pw', 'shared@example.org');"
    )
    hook = {"UC_TEST_PAUSE_FILE": str(pause)}
    runs = [subprocess.Popen([php, "-r", script], stdin=subprocess.PIPE, env=hook) for _ in range(2)]
    for index, run in enumerate(runs):
        run.stdin.write(json.dumps({"defines": forum.ucenter_defines(), "name": f"racer{index}"}).encode())
        run.stdin.close()
    time.sleep(1.0)
    pause.unlink()
    assert all(run.wait(20) == 0 for run in runs)
    assert len(forum.rows()) == 2


# --- 10. the forum's own member rows ------------------------------------------------------------------


@pytest.mark.parametrize(("regverify", "group"), [("0", 10), ("1", 8)])
def test_the_database_backend_activates_forum_members_when_asked(
    forum_database, worker_process, redis_url, connection, regverify, group
):
    forum = forum_database("1.7", "utf-8")
    forum.add_forum_tables(regverify=regverify)
    plain = sync(connection, "inactive", "inactive@example.org")
    run_burst(worker_process, redis_url, forum.settings())
    assert outcome(plain)[0] == "finished" and forum.forum_rows("common_member") == []  # activated at first login

    address = "2001:db8::1234:5678:9abc"
    activated = sync(connection, "active", "active@example.org", regip=address)
    run_burst(worker_process, redis_url, {**forum.settings(), "DISCUZ_ACTIVATE": "1"})
    assert outcome(activated)[0] == "finished", outcome(activated)
    uid = outcome(activated)[1]["uid"]
    (member,) = forum.forum_rows("common_member")
    assert (member["uid"], member["username"], member["email"]) == (uid, "active", "active@example.org")
    assert (member["groupid"], member["timeoffset"], member["adminid"]) == (group, "9999", 0)
    (status,) = forum.forum_rows("common_member_status")
    assert status["regip"] == address[:15] and status["lastvisit"] > time.time() - 120
    (count,) = forum.forum_rows("common_member_count")
    assert count["extcredits1"] == 5  # the forum's initcredits: "credits,extcredits1,..."
    for table in ("common_member_profile", "common_member_field_forum", "common_member_field_home"):
        assert [row["uid"] for row in forum.forum_rows(table)] == [uid]


def test_activation_replaces_a_stale_forum_row_and_catches_up_on_reruns(
    forum_database, mariadb, worker_process, redis_url, connection
):
    forum = forum_database("1.7", "utf-8")
    forum.add_forum_tables()
    with mariadb.admin(forum.name) as admin, admin.cursor() as cursor:  # left by a member deleted from UCenter
        cursor.execute("INSERT INTO pre_common_member (uid, username, email) VALUES (500, 'stale', 'x@example.org')")
        cursor.execute("UPDATE pre_common_setting SET svalue=' 60x,1,zz' WHERE skey='initcredits'")
        admin.commit()
    stale = sync(connection, "stale", "stale@example.org")
    sync(connection, "earlier", "earlier@example.org")
    run_burst(worker_process, redis_url, {**forum.settings(), "DISCUZ_ACTIVATE": "1"})
    assert outcome(stale)[0] == "finished", outcome(stale)
    by_name = {row["username"]: row for row in forum.forum_rows("common_member")}
    # the group whose credit range holds the starting credits (PHP's intval of " 60x": 60)
    assert by_name["stale"]["uid"] == outcome(stale)[1]["uid"] and by_name["stale"]["groupid"] == 11
    assert [row["extcredits1"] for row in forum.forum_rows("common_member_count")] == [1, 1]

    with mariadb.admin(forum.name) as admin, admin.cursor() as cursor:  # "earlier" was never activated
        cursor.execute("DELETE FROM pre_common_member WHERE username='earlier'")
        admin.commit()
    again = sync(connection, "earlier", "earlier@example.org")
    run_burst(worker_process, redis_url, {**forum.settings(), "DISCUZ_ACTIVATE": "1"})
    assert outcome(again)[1]["created"] is False
    assert sorted(row["username"] for row in forum.forum_rows("common_member")) == ["earlier", "stale"]


def test_activation_without_the_forum_tables_creates_nothing(forum_database, worker_process, redis_url, connection):
    forum = forum_database("1.6", "utf-8")  # no forum tables beside UCenter's
    job = sync(connection, "nowhere", "nowhere@example.org")
    run_burst(worker_process, redis_url, {**forum.settings(), "DISCUZ_ACTIVATE": "1"})
    status, reason = outcome(job)
    assert status == "failed" and "DISCUZ_ACTIVATE: the forum's tables pre_common_member, " in reason
    assert "check DISCUZ_FORUM_TABLE_PREFIX" in reason
    assert forum.rows() == []


@pytest.mark.parametrize(("name", "value"), [("DISCUZ_SYNC_LOCK_SECONDS", "0"), ("DISCUZ_SYNC_LOCK_WAIT", "nan")])
def test_lock_settings_that_would_block_for_ever_are_refused(
    forum_database, worker_process, redis_url, connection, name, value
):
    forum = forum_database("1.7", "utf-8")
    job = sync(connection, "locked", "locked@example.org")
    run_burst(worker_process, redis_url, {**forum.settings(), name: value})
    status, reason = outcome(job)
    # SettingsError's message can quote a setting's value, so a sensitive job's failure withholds it
    assert (status, reason) == ("failed", "jobs.settings.SettingsError: [message withheld: the job is sensitive]")
    assert forum.rows() == [] and connection.keys("jobs:discuz:sync-lock:*") == []
