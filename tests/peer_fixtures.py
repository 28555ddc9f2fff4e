"""Fixtures for the job tests: a real SMTP server, UCenter server, MariaDB and PHP, and the job settings."""

from __future__ import annotations

import email
import email.policy
import json
import os
import secrets
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql.cursors
import pytest
from peers.mariadb import MariaDB
from peers.processes import PEERS_DIR, REPO_DIR, ServerProcess, free_port
from peers.system_packages import ensure_command, ensure_php_extension
from peers.tls import make_certificates
from peers.ucenter_schema import forum_member_tables, member_tables

from jobs.discuz.activation import TABLES as FORUM_MEMBER_TABLES
from jobs.sealing import KEY_VARIABLE, generate_key

PHP_UC_CLIENT = REPO_DIR / "tests" / "php" / "uc_client"
PHP_UC_CLIENT_16 = REPO_DIR / "tests" / "php" / "uc_client_16"
PHP_UCENTER = REPO_DIR / "tests" / "php" / "ucenter" / "ucenter.php"
PHP_UC_SERVER = REPO_DIR / "tests" / "php" / "uc_server"


@pytest.fixture(scope="session", autouse=True)
def sealing_key() -> Iterator[str]:
    """Web app and workers share JOBS_SEALING_KEY; the worker subprocesses inherit it."""
    key = generate_key()
    with pytest.MonkeyPatch.context() as patcher:
        patcher.setenv(KEY_VARIABLE, key)
        yield key


class SmtpSink:
    USER = "mailer"

    def __init__(self, directory: Path, rules: list[str], implicit_tls: bool = False):
        self.password = secrets.token_urlsafe(12)
        directory.mkdir(parents=True, exist_ok=True)
        self.maildir = directory / "mail"
        self.ca_file, cert, key = make_certificates(directory)
        self.port = free_port()
        args = ["--port", str(self.port), "--maildir", str(self.maildir), "--auth-user", self.USER]
        args += ["--tls-cert", str(cert), "--tls-key", str(key)] + (["--implicit-tls"] if implicit_tls else [])
        self.security = "tls" if implicit_tls else "starttls"
        for rule in rules:
            args += ["--rule", rule]
        self._args = args
        self.start()

    def start(self) -> None:
        """(Re)start the server on the same port with the same settings."""
        self.server = ServerProcess(PEERS_DIR / "smtp_sink.py", self._args, env={"SMTP_SINK_PASSWORD": self.password})

    def settings(self) -> dict[str, str]:
        return {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.port),
            "SMTP_SECURITY": self.security,
            "SMTP_USER": self.USER,
            "SMTP_PASSWORD": self.password,
            "SMTP_CA_FILE": str(self.ca_file),
            "SMTP_TIMEOUT": "5",
            "MAIL_FROM": "Example Site <noreply@example.com>",
            "MAIL_SITE_NAME": "Example",
        }

    def raw_messages(self) -> list[bytes]:
        files = sorted(self.maildir.glob("*.eml"), key=lambda path: int(path.stem))
        return [path.read_bytes() for path in files]

    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(raw, policy=email.policy.default) for raw in self.raw_messages()]

    def events(self) -> list[dict]:
        log = self.maildir / "events.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[Callable[..., SmtpSink]]:
    """``smtp_sink(*rules)`` starts a STARTTLS (or implicit TLS) + AUTH server; rules as in smtp_sink.py."""
    started: list[SmtpSink] = []

    def start(*rules: str, implicit_tls: bool = False) -> SmtpSink:
        sink = SmtpSink(tmp_path / f"smtp{len(started)}", list(rules), implicit_tls)
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.server.stop()


class UCenterPeer:
    def __init__(self, version: str, charset: str, extra_args: list[str], tls_directory: Path | None = None):
        self.key = secrets.token_urlsafe(24)
        self.appid = "3"
        self.version = version
        self.charset = charset
        self.port = free_port()
        args = ["--port", str(self.port), "--appid", self.appid, "--version", version, "--charset", charset]
        self.ca_file: Path | None = None
        if tls_directory is not None:
            tls_directory.mkdir(parents=True, exist_ok=True)
            self.ca_file, cert, key = make_certificates(tls_directory)
            args += ["--tls-cert", str(cert), "--tls-key", str(key)]
        self.server = ServerProcess(PEERS_DIR / "ucenter_server.py", args + extra_args, env={"UC_KEY": self.key})
        self.url = f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.port}"
        self._tls = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None

    def settings(self) -> dict[str, str]:
        return {
            "DISCUZ_BACKEND": "http",
            "DISCUZ_UC_VERSION": self.version,
            "DISCUZ_CHARSET": self.charset,
            "UC_API": self.url,
            "UC_KEY": self.key,
            "UC_APPID": self.appid,
            "DISCUZ_HTTP_TIMEOUT": "5",
            **({"DISCUZ_HTTP_CA_FILE": str(self.ca_file)} if self.ca_file else {}),
        }

    def members(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/_members", timeout=5, context=self._tls) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, int]:
        """Connections accepted, TLS handshakes and API requests so far (these calls' own included)."""
        with urllib.request.urlopen(f"{self.url}/_stats", timeout=5, context=self._tls) as response:
            return json.loads(response.read())

    def add_member(self, username: str, email: str, password: str) -> int:
        return self._post("/_members", {"username": username, "email": email, "password": password})["uid"]

    def queue_faults(self, *faults: object) -> None:
        self._post("/_faults", list(faults))

    def _post(self, path: str, payload: object) -> dict:
        request = urllib.request.Request(f"{self.url}{path}", data=json.dumps(payload).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5, context=self._tls) as response:
            return json.loads(response.read())


@pytest.fixture
def ucenter(tmp_path: Path) -> Iterator[Callable[..., UCenterPeer]]:
    """``ucenter(version="1.7", charset="utf-8", *extra_args, tls=False)`` starts a UCenter-protocol
    server; ``tls=True``: over HTTPS with a certificate of a CA of its own (``peer.ca_file``)."""
    started: list[UCenterPeer] = []

    def start(version: str = "1.7", charset: str = "utf-8", *extra_args: str, tls: bool = False) -> UCenterPeer:
        tls_directory = tmp_path / f"ucenter-tls-{len(started)}" if tls else None
        peer = UCenterPeer(version, charset, list(extra_args), tls_directory)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.server.stop()


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    server = MariaDB(tmp_path_factory.mktemp("mariadb")).start()
    yield server
    server.stop()


class ForumDatabase:
    PREFIX = "pre_ucenter_"

    def __init__(self, server: MariaDB, version: str, charset: str, mysql_charset: str | None = None):
        self.server = server
        self.version = version
        self.charset = charset
        # What UCenter installs: 1.6 on MySQL's 3-byte utf8, 1.7 on utf8mb4.
        utf8 = "utf8mb3" if version == "1.6" else "utf8mb4"
        self.mysql_charset = mysql_charset or {"utf-8": utf8, "gbk": "gbk"}[charset]
        self.name = f"forum_{version.replace('.', '')}_{self.mysql_charset}"
        self.user = f"u_{self.name}"  # one per database: each forum's password stays valid
        self.password = secrets.token_urlsafe(12)
        self.php_db_host: str | None = None  # where PHP's UCenter finds the server, when not the real one
        mysql_charset = self.mysql_charset
        with server.admin() as admin, admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {self.name}")
            cursor.execute(f"CREATE DATABASE {self.name} CHARACTER SET {mysql_charset}")
            cursor.execute(f"CREATE USER IF NOT EXISTS '{self.user}'@'127.0.0.1' IDENTIFIED BY %s", (self.password,))
            cursor.execute(f"ALTER USER '{self.user}'@'127.0.0.1' IDENTIFIED BY %s", (self.password,))
            cursor.execute(f"GRANT SELECT, INSERT ON {self.name}.* TO '{self.user}'@'127.0.0.1'")
            cursor.execute(f"USE {self.name}")
            for statement in member_tables(version, charset=mysql_charset):
                cursor.execute(statement)

    def settings(self) -> dict[str, str]:
        return {
            "DISCUZ_BACKEND": "database",
            "DISCUZ_UC_VERSION": self.version,
            "DISCUZ_CHARSET": self.charset,
            "DISCUZ_DB_HOST": "127.0.0.1",
            "DISCUZ_DB_PORT": str(self.server.port),
            "DISCUZ_DB_USER": self.user,
            "DISCUZ_DB_PASSWORD": self.password,
            "DISCUZ_DB_NAME": self.name,
            "DISCUZ_DB_TIMEOUT": "5",
        }

    def rows(self, table: str = "members") -> list[dict]:
        with self.server.admin(self.name) as admin, admin.cursor(pymysql.cursors.DictCursor) as cursor:
            cursor.execute(f"SELECT * FROM pre_ucenter_{table} ORDER BY uid")
            return list(cursor.fetchall())

    def add_forum_tables(self, regverify: str = "0") -> None:
        """The forum's member tables (``pre_common_member`` ...) beside UCenter's, as in X3.5's standalone install."""
        with self.server.admin(self.name) as admin, admin.cursor() as cursor:
            for statement in forum_member_tables(charset=self.mysql_charset, regverify=regverify):
                cursor.execute(statement)
            for table in FORUM_MEMBER_TABLES:  # activation writes with REPLACE, as Discuz! does
                cursor.execute(f"GRANT DELETE ON {self.name}.pre_{table} TO '{self.user}'@'127.0.0.1'")
            admin.commit()

    def forum_rows(self, table: str) -> list[dict]:
        with self.server.admin(self.name) as admin, admin.cursor(pymysql.cursors.DictCursor) as cursor:
            cursor.execute(f"SELECT * FROM pre_{table} ORDER BY uid")
            return list(cursor.fetchall())

    def ucenter_defines(self) -> dict[str, str]:
        """The constants tests/php/ucenter/ucenter.php reads (uc_client's config, uc_server's environment)."""
        return {
            "UC_DBHOST": self.php_db_host or f"127.0.0.1:{self.server.port}",
            "UC_DBUSER": self.user,
            "UC_DBPW": self.password,
            "UC_DBNAME": self.name,
            "UC_DBTABLEPRE": self.PREFIX,
            "UC_DBCHARSET": self.mysql_charset,
            "UC_CHARSET": self.charset,
            "UCT_VERSION": self.version,
        }

    def login(self, php: str, username: str, password: str, discuz: bool = True) -> int:
        """A login with PHP on this database: UCenter's answer (uid > 0, -1 no member, -2 wrong password).

        ``discuz``: as Discuz!'s own login form does it (it refuses an empty password, "0", and one that
        ``addslashes`` changes, answered here as -3, then hands uc_user_login the escaped username);
        else a bare uc_user_login."""
        script = (
            "$r = json_decode(stream_get_contents(STDIN), true);"
            "foreach ($r['defines'] as $name => $value) { define($name, $value); }"
            f"require {json.dumps(str(PHP_UCENTER))};"
            "$c = function ($t) { return UC_CHARSET === 'utf-8' ? $t : iconv('UTF-8', UC_CHARSET, $t); };"
            "$u = $c($r['username']); $p = $c($r['password']);"
            "if ($r['discuz'] && (!$p || $p !== addslashes($p))) { echo -3; exit; }"
            "echo uct_login($r['discuz'] ? addslashes($u) : $u, $p);"
        )
        request = {"defines": self.ucenter_defines(), "username": username, "password": password, "discuz": discuz}
        run = subprocess.run([php, "-r", script], input=json.dumps(request), capture_output=True, text=True)
        return int(run.stdout) if run.stdout.lstrip("-").isdigit() else run.stdout

    def uc_client_settings(self, php: str, directory: Path, uc_client: Path = PHP_UC_CLIENT) -> dict[str, str]:
        """The ``php`` backend on uc_client's mysql mode (our stand-in, or ``uc_client``) against this database."""
        config = directory / f"config_ucenter_{self.name}.php"
        defines = {**self.ucenter_defines(), "UC_CONNECT": "mysql", "UC_API": "http://127.0.0.1:1", "UC_KEY": "-"}
        config.write_text("<?php\n" + "".join(f"define({_php(k)}, {_php(v)});\n" for k, v in defines.items()))
        return {
            "DISCUZ_BACKEND": "php",
            "DISCUZ_UC_VERSION": self.version,
            "DISCUZ_CHARSET": self.charset,
            "DISCUZ_PHP_BINARY": php,
            "DISCUZ_PHP_UC_CLIENT": str(uc_client),
            "DISCUZ_PHP_CONFIG": str(config),
            "DISCUZ_PHP_TIMEOUT": "15",
        }


class PhpUcServer:
    """tests/php/uc_server (our stand-in for uc_server) under ``php -S``, on a :class:`ForumDatabase`."""

    def __init__(self, php: str, forum: ForumDatabase, extra_env: dict[str, str]):
        self.forum = forum
        self.key = secrets.token_urlsafe(24)
        self.appid = "2"
        self.port = free_port()
        env = {**os.environ, **forum.ucenter_defines(), "UC_KEY": self.key, "UC_APPID": self.appid, **extra_env}
        router = PHP_UC_SERVER / "index.php"
        self.process = subprocess.Popen(
            [php, "-S", f"127.0.0.1:{self.port}", str(router)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not _accepts(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("php -S did not start the uc_server stand-in")
            time.sleep(0.05)

    def settings(self) -> dict[str, str]:
        return {
            "DISCUZ_BACKEND": "http",
            "DISCUZ_UC_VERSION": self.forum.version,
            "DISCUZ_CHARSET": self.forum.charset,
            "UC_API": f"http://127.0.0.1:{self.port}",
            "UC_KEY": self.key,
            "UC_APPID": self.appid,
            "DISCUZ_HTTP_TIMEOUT": "10",
        }

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def _php(text: str) -> str:
    """``text`` as a single-quoted PHP string literal (nothing in it is interpolated)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def forum_database(mariadb: MariaDB) -> Callable[..., ForumDatabase]:
    """``forum_database(version, charset, mysql_charset=None)``: fresh UCenter member tables and a
    least-privilege user (tables in what UCenter installs: 1.6 utf8mb3, 1.7 utf8mb4, or gbk)."""

    def create(version: str = "1.7", charset: str = "utf-8", mysql_charset: str | None = None) -> ForumDatabase:
        return ForumDatabase(mariadb, version, charset, mysql_charset)

    return create


@pytest.fixture
def php_uc_server(php: str) -> Iterator[Callable[..., PhpUcServer]]:
    """``php_uc_server(forum, extra_env={})``: our uc_server stand-in, in PHP, serving ``forum``'s tables."""
    started: list[PhpUcServer] = []

    def start(forum: ForumDatabase, extra_env: dict[str, str] | None = None) -> PhpUcServer:
        started.append(PhpUcServer(php, forum, extra_env or {}))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def php() -> str:
    """PHP with mysqli, which the UCenter stand-ins (and uc_client itself) use."""
    binary = ensure_command("php", ["php-cli", "php-mysql"])
    ensure_php_extension(binary, "mysqli", ["php-mysql"])
    return binary


@pytest.fixture
def php_uc_client(php: str, tmp_path: Path) -> Callable[[UCenterPeer], dict[str, str]]:
    """Settings for the PHP backend: the site's config file and our uc_client stand-in, talking to ``peer``."""

    def settings(peer: UCenterPeer) -> dict[str, str]:
        config = tmp_path / "config_ucenter.php"
        config.write_text(
            "<?php\n"
            f"define('UC_API', {json.dumps(peer.url)});\n"
            f"define('UC_KEY', {json.dumps(peer.key)});\n"
            f"define('UC_APPID', {json.dumps(peer.appid)});\n"
            f"define('UC_CHARSET', {json.dumps(peer.charset)});\n"
        )
        return {
            "DISCUZ_BACKEND": "php",
            "DISCUZ_UC_VERSION": peer.version,
            "DISCUZ_CHARSET": peer.charset,
            "DISCUZ_PHP_BINARY": php,
            "DISCUZ_PHP_UC_CLIENT": str(PHP_UC_CLIENT),
            "DISCUZ_PHP_CONFIG": str(config),
            "DISCUZ_PHP_TIMEOUT": "15",
        }

    return settings


class SentrySink:
    """scripts/peers/sentry_sink.py in its own process, and what it received."""

    def __init__(self, directory: Path, answer: str = "ok"):
        self.store = directory
        self.port = free_port()
        self.server = ServerProcess(
            PEERS_DIR / "sentry_sink.py",
            ["--port", str(self.port), "--store", str(directory), "--answer", answer],
        )

    def dsn(self, secret_key: str | None = None) -> str:
        keys = f"publickey:{secret_key}" if secret_key else "publickey"
        return f"http://{keys}@127.0.0.1:{self.port}/1"

    def received(self) -> list[bytes]:
        """Every envelope body received so far, in order."""
        paths = sorted(self.store.glob("*.envelope"), key=lambda path: int(path.stem))
        return [path.read_bytes() for path in paths]

    def requests_headers(self) -> list[dict[str, str]]:
        return [json.loads(path.read_text()) for path in sorted(self.store.glob("*.headers"))]

    def events(self) -> list[dict]:
        """The error events (envelope items of type ``event``) received so far."""
        return [item for envelope in self.received() for kind, item in envelope_items(envelope) if kind == "event"]

    def stop(self) -> None:
        self.server.stop()


def envelope_items(body: bytes) -> list[tuple[str, dict]]:
    """``(type, payload)`` of each item of a Sentry envelope (JSON payloads only)."""
    lines = body.split(b"\n", 1)
    rest = lines[1] if len(lines) > 1 else b""
    items: list[tuple[str, dict]] = []
    while rest.strip():
        header_line, rest = rest.split(b"\n", 1)
        header = json.loads(header_line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length + 1 :]
        try:
            items.append((header.get("type", ""), json.loads(payload)))
        except ValueError:
            items.append((header.get("type", ""), {}))
    return items


@pytest.fixture
def sentry_sink(tmp_path: Path) -> Iterator[Callable[..., SentrySink]]:
    started: list[SentrySink] = []

    def start(answer: str = "ok") -> SentrySink:
        sink = SentrySink(tmp_path / f"sentry-{len(started)}", answer)
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()
