"""A local UCenter: speaks the HTTP API that uc_client uses, for the demo and the tests.

    UC_KEY=... python scripts/peers/ucenter_server.py --port 8090 --appid 1 [--version 1.7]
        [--charset utf-8] [--censor WORD ...] [--email-domain DOMAIN ...] [--unique-email] [--latency S]
        [--bcrypt-cost N] [--tls-cert FILE --tls-key FILE]

It decodes ``input`` with authcode and the key from ``UC_KEY`` (never argv), checks the agent hash,
the age of the request and (1.7) that m/a/appid were not changed, applies UCenter's username and
e-mail rules and answers with its return codes.  ``user/register`` and ``user/get_user`` are served;
members are hashed as that UCenter version would (1.7: bcrypt at PHP's cost 10, ~80 ms of CPU each;
``--bcrypt-cost 4`` takes ~1 ms, so that a demo measures the workers, not this stand-in);
``--latency`` makes each API answer take that long, like a forum across the Internet.  With
``--tls-cert``/``--tls-key`` it serves HTTPS.  Connections are kept alive (HTTP/1.1) until idle for
``KEEPALIVE_TIMEOUT`` seconds, as Apache's default does.  For tests: ``GET /_members`` lists members as
JSON; ``POST /_members`` adds one; ``GET /_stats`` counts the connections accepted, TLS handshakes
and API requests so far; ``POST /_faults`` queues faults for the next API requests, one each, in order:
a JSON list of ``null`` (answer normally), ``"html"``, an HTTP status such as ``503``,
``"sleep:SECONDS"``, ``"quote"`` (a PHP warning quoting the member's username and e-mail in several
spellings before the answer, as a UCenter with ``display_errors`` on prints when MySQL refuses a query),
``"halt:ERRNO"`` (uc_server's database error page for that MySQL error, quoting the request's username
and e-mail in its SQL and message; for ``halt:1062`` on a registration the member is added first, as
the registration that won the race inside UCenter would have), ``"xml-entity"`` (get_user's document
with a DTD whose entity spells the e-mail) or ``"xml-bomb"`` (an entity expansion bomb).
Prints ``ready <port>``.
"""

from __future__ import annotations

if __name__ == "__main__":
    # One greenlet per connection, not one thread: a pool of hundreds of jobs calling at once gets
    # its answers in time (threads here spent ~7 ms of CPU per request, fighting over the GIL).
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import html  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from http.server import BaseHTTPRequestHandler  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import parse_qsl, quote  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from serving import serve_http, tls_context  # noqa: E402

from jobs.discuz import authcode, hashing, php, rules  # noqa: E402
from jobs.discuz.codes import (  # noqa: E402
    CENSORED_USERNAME,
    EMAIL_DOMAIN_NOT_ALLOWED,
    EMAIL_EXISTS,
    USERNAME_EXISTS,
)

MAX_AGE = 3600
KEEPALIVE_TIMEOUT = 5.0  # seconds an idle kept-alive connection stays open (Apache's KeepAliveTimeout)
# MySQL's messages for the errors a test asks uc_server's error page for; others get a generic one.
MYSQL_MESSAGES = {
    1054: "Unknown column 'secmobicc' in 'field list'",
    1062: "Duplicate entry '{username}' for key 'username'",
    1205: "Lock wait timeout exceeded; try restarting transaction",
    1213: "Deadlock found when trying to get lock; try restarting transaction",
    2006: "MySQL server has gone away",
    2013: "Lost connection to MySQL server during query",
}
CONNECT_ERRORS = (2002, 2003)


class UCenter:
    def __init__(
        self, key: str, appid: str, version: str, charset: str, censor, email_domains, unique_email, cost: int
    ):
        self.key = key
        self.cost = cost
        self.appid = appid
        self.version = version
        self.charset = charset
        self.censor = [word.lower() for word in censor]
        self.email_domains = [domain.lower() for domain in email_domains]
        self.unique_email = unique_email
        self.members: list[dict] = []
        self.faults: list = []
        self.lock = threading.Lock()

    def answer(self, form: dict[str, str], user_agent: str) -> bytes:
        plain = authcode.decode(form.get("input", ""), self.key)
        if not plain:
            return b"Invalid input"
        fields = dict(parse_qsl(plain.decode("ascii"), keep_blank_values=True, encoding=self.charset))
        if fields.get("agent") != hashlib.md5(user_agent.encode(), usedforsecurity=False).hexdigest():
            return b"Access denied for agent changed"
        if time.time() - int(fields.get("time", "0") or 0) > MAX_AGE:
            return b"Authorization has expired"
        operation = (form.get("m"), form.get("a"), form.get("appid"))
        if self.version == "1.7" and (fields.get("m"), fields.get("a"), fields.get("appid")) != operation:
            return b"Access denied for operation changed"
        if form.get("appid") != self.appid:
            return b"Access denied for application"
        # uc_server strips one level of slashes from each argument (Discuz! escapes the username first).
        for name in ("username", "email"):
            fields[name] = php.stripslashes(fields.get(name, "").encode(self.charset)).decode(self.charset, "replace")
        if operation[:2] == ("user", "register"):
            return str(self.register(fields)).encode()
        if operation[:2] == ("user", "get_user"):
            return self.get_user(fields.get("username", ""))
        return b"Invalid operation"

    def register(self, fields: dict[str, str]) -> int:
        username, email = fields.get("username", ""), fields.get("email", "")
        code = rules.check_username(username, self.charset, rules.four_byte_utf8(self.version))
        if code:
            return code
        if any(word in username.lower() for word in self.censor):
            return CENSORED_USERNAME
        with self.lock:
            code = self.refusal(username, email)
        if code:
            return code
        # Hashing takes the CPU for a while: outside the lock, then the checks again before adding.
        password, salt = self.hash(fields.get("password", ""))
        with self.lock:
            return self.refusal(username, email) or self.add(username, email, password, salt, fields.get("regip", ""))

    def refusal(self, username: str, email: str) -> int:
        """UCenter's code for why this member cannot be added now, or 0 (call it holding the lock)."""
        if self.find(username):
            return USERNAME_EXISTS
        code = rules.check_email(email, self.version)
        if code:
            return code
        if self.email_domains and email.rsplit("@", 1)[-1].lower() not in self.email_domains:
            return EMAIL_DOMAIN_NOT_ALLOWED
        if self.unique_email and any(m["email"].lower() == email.lower() for m in self.members):
            return EMAIL_EXISTS
        return 0

    def hash(self, password: str) -> tuple[str, str]:
        return hashing.hash_password(password, self.version, self.charset, self.cost)

    def add(self, username: str, email: str, password: str, salt: str, regip: str = "") -> int:
        uid = len(self.members) + 1
        self.members.append(
            {"uid": uid, "username": username, "email": email, "password": password, "salt": salt, "regip": regip}
        )
        return uid

    def find(self, username: str) -> dict | None:
        return next((m for m in self.members if m["username"].lower() == username.lower()), None)

    def fields(self, form: dict[str, str]) -> dict[str, str]:
        """The request's sealed fields, or none when they do not decode."""
        plain = authcode.decode(form.get("input", ""), self.key)
        return dict(parse_qsl(plain.decode("ascii"), keep_blank_values=True, encoding=self.charset)) if plain else {}

    def warning_quoting_the_member(self, form: dict[str, str]) -> bytes:
        """PHP's HTML-formatted warning for a MySQL refusal, quoting the request's username and e-mail
        as given, upper-cased, HTML-escaped and URL-encoded, in the forum charset."""
        fields = self.fields(form)
        quoted = " ".join(
            f"{value} {value.upper()} {html.escape(value)} {quote(value, encoding=self.charset)}"
            for value in (fields.get("username", ""), fields.get("email", ""))
        )
        text = (
            f"<br />\n<b>Warning</b>:  mysqli_query(): Duplicate entry for member {quoted} in "
            "<b>/var/www/uc_server/lib/db.class.php</b> on line <b>62</b><br />\n"
        )
        return text.encode(self.charset, errors="replace")

    def halt_page(self, form: dict[str, str], errno: int) -> bytes:
        """What uc_server's ``halt()`` (lib/db.class.php, dbi.class.php) ``exit()``s with when its query
        fails: the message, the SQL (HTML-escaped) and MySQL's error, the table prefix as ``[Table]``.
        Whitespace left by an included file comes first, as on many installs."""
        fields = self.fields(form)
        username, email = fields.get("username", ""), fields.get("email", "")
        registering = (form.get("m"), form.get("a")) == ("user", "register")
        if errno == 1062 and registering:
            self.register(fields)  # the registration that got the name first, inside UCenter
        if errno in CONNECT_ERRORS:
            page = (
                "<b>UCenter info:</b> Can not connect to MySQL server<br />"
                f"<b>Error:</b>Can't connect to MySQL server on 'db.internal' ({errno})<br />"
            )
        else:
            if registering:
                sql = (
                    f"INSERT INTO [Table]members SET secques='', username='{username}', password='x', "
                    f"email='{email}', regip='{fields.get('regip', '')}', regdate='{int(time.time())}', salt=''"
                )
            else:
                sql = f"SELECT * FROM [Table]members WHERE username='{username}'"
            message = MYSQL_MESSAGES.get(errno, "Query refused for member {username} <{email}>")
            page = (
                f"<b>UCenter info:</b> MySQL Query Error<br /><b>SQL:</b>{html.escape(sql)}<br />"
                f"<b>Error:</b>{message.format(username=username, email=email)}<br />"
            )
        return f"\r\n{page}<b>Errno:</b>{errno}<br />".encode(self.charset, errors="replace")

    def entity_document(self, form: dict[str, str], bomb: bool) -> bytes:
        """get_user's document with a DTD: an entity that spells the member's e-mail (a parser that
        expands entities takes it for a member), or a billion-laughs expansion bomb."""
        username = self.fields(form).get("username", "")
        if bomb:
            entities = '<!ENTITY lol0 "lol">' + "".join(
                f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">' for level in range(1, 10)
            )
            email = "&lol9;"
        else:
            entities = f'<!ENTITY mail "{html.escape(username)}@example.org">'
            email = "&mail;"
        document = (
            f'<?xml version="1.0" encoding="{self.charset}"?><!DOCTYPE root [{entities}]><root>'
            f'<item id="0">99</item><item id="1"><![CDATA[{username}]]></item><item id="2">{email}</item></root>'
        )
        return document.encode(self.charset, errors="replace")

    def get_user(self, username: str) -> bytes:
        member = self.find(username)
        if member is None:
            return b"0"
        items = "".join(
            f'<item id="{index}"><![CDATA[{member[key]}]]></item>'
            for index, key in enumerate(("uid", "username", "email"))
        )
        document = f'<?xml version="1.0" encoding="{self.charset}"?><root>{items}</root>'
        return document.encode(self.charset)


class Handler(BaseHTTPRequestHandler):
    ucenter: UCenter
    latency = 0.0
    api_requests = 0
    protocol_version = "HTTP/1.1"  # keep-alive, as Apache and nginx in front of a real UCenter
    timeout = KEEPALIVE_TIMEOUT

    def do_GET(self) -> None:
        if self.path == "/_members":
            with self.ucenter.lock:
                self.reply(200, json.dumps(self.ucenter.members).encode(), "application/json")
        elif self.path == "/_stats":
            with self.server.counts_lock:
                stats = {**self.server.counts, "api_requests": Handler.api_requests}
            self.reply(200, json.dumps(stats).encode(), "application/json")
        else:
            self.reply(404, b"not found")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/_members":
            member = json.loads(body)
            password, salt = self.ucenter.hash(member["password"])
            with self.ucenter.lock:
                uid = self.ucenter.add(member["username"], member["email"], password, salt)
            self.reply(200, json.dumps({"uid": uid}).encode(), "application/json")
            return
        if self.path == "/_faults":
            with self.ucenter.lock:
                self.ucenter.faults.extend(json.loads(body))
            self.reply(200, b"{}", "application/json")
            return
        if self.path.split("?")[0] != "/index.php":
            self.reply(404, b"not found")
            return
        with self.ucenter.lock:
            Handler.api_requests += 1
        form = dict(parse_qsl(body.decode("ascii"), keep_blank_values=True))
        fault = self.inject_fault(form)
        if fault is True:
            return
        time.sleep(self.latency)
        answer = self.ucenter.answer(form, self.headers.get("User-Agent", ""))
        if fault == "quote":
            answer = self.ucenter.warning_quoting_the_member(form) + answer
        self.reply(200, answer, f"text/html; charset={self.ucenter.charset}")

    def inject_fault(self, form: dict[str, str]) -> bool | str:
        """True when the fault was the whole reply; ``"quote"`` when the answer is to carry a warning."""
        with self.ucenter.lock:
            fault = self.ucenter.faults.pop(0) if self.ucenter.faults else None
        if fault is None:
            return False
        page_type = f"text/html; charset={self.ucenter.charset}"
        if isinstance(fault, int):
            self.reply(fault, b"<html><body>Service Unavailable</body></html>")
            return True
        if fault == "html":
            self.reply(200, b"<!DOCTYPE html><html><body>Discuz! Database Error</body></html>")
            return True
        if fault == "quote":
            return fault
        if str(fault).startswith("halt:"):
            self.reply(200, self.ucenter.halt_page(form, int(fault.split(":", 1)[1])), page_type)
            return True
        if fault in ("xml-entity", "xml-bomb"):
            self.reply(200, self.ucenter.entity_document(form, bomb=fault == "xml-bomb"), page_type)
            return True
        if str(fault).startswith("sleep:"):
            time.sleep(float(fault.split(":", 1)[1]))
        return False

    def reply(self, status: int, body: bytes, content_type: str = "text/html") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--appid", default="1")
    parser.add_argument("--version", choices=hashing.VERSIONS, default="1.7")
    parser.add_argument("--charset", choices=("utf-8", "gbk", "big5"), default="utf-8")
    parser.add_argument("--censor", action="append", default=[])
    parser.add_argument("--email-domain", action="append", default=[])
    parser.add_argument("--unique-email", action="store_true")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each API answer takes")
    parser.add_argument("--bcrypt-cost", type=int, choices=range(4, 32), default=hashing.BCRYPT_ROUNDS, metavar="4-31")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM), with --tls-key")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    options = parser.parse_args(argv)
    key = os.environ.get("UC_KEY")
    if not key:
        parser.error("set UC_KEY in the environment")
    Handler.ucenter = UCenter(
        key,
        options.appid,
        options.version,
        options.charset,
        options.censor,
        options.email_domain,
        options.unique_email,
        options.bcrypt_cost,
    )
    Handler.latency = options.latency
    return serve_http(Handler, options.host, options.port, tls_context(options.tls_cert, options.tls_key))


if __name__ == "__main__":
    sys.exit(main())
