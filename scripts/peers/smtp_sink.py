"""A local SMTP server (aiosmtpd) that stores every message it accepts: for the demo and the tests.

    python scripts/peers/smtp_sink.py --port 2525 --maildir /tmp/mail [--tls-cert C --tls-key K]
        [--auth-user USER] [--rule ADDRESS=ANSWER ...]

With ``--tls-cert`` it offers STARTTLS and requires it (``--implicit-tls``: TLS from the first
byte instead); with ``--auth-user`` it requires AUTH (the password comes from
``SMTP_SINK_PASSWORD``, never argv).  A ``--rule`` makes one address answer ``550`` / ``451`` (any
code; the answer quotes the address in several spellings, as real servers do) or ``sleep:SECONDS``
before answering, as a recipient (RCPT) or as the sender (MAIL).  Accepted messages land in the
maildir as ``<n>.eml`` (the exact bytes received); ``events.jsonl`` logs each with its envelope and
connection (``"event": "message"``), and each refusal: every 4xx or 5xx answer to MAIL, RCPT or DATA,
a rule's or the server's own (authentication required, a malformed address, a line too long...), with
its stage, the command's argument and the answer (``"event": "refused"``).  Like a strict MTA, it
refuses a message with a line over 998 bytes (RFC 5321 4.5.3.1.6).
Prints ``ready <port>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import os
import signal
import ssl
import sys
import threading
from pathlib import Path
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

MAX_LINE = 998


class Sink:
    def __init__(self, maildir: Path, rules: dict[str, str]):
        self.maildir = maildir
        self.rules = rules
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    def event(self, **fields) -> None:
        with self.lock, open(self.maildir / "events.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(fields) + "\n")

    async def refusal_by_rule(self, address: str) -> str | None:
        rule = self.rules.get(address.lower())
        if rule and rule.startswith("sleep:"):
            await asyncio.sleep(float(rule.split(":", 1)[1]))
        elif rule:
            # Quoting the address, as Postfix and Exim do, and its local part in other spellings, as
            # other servers do ("user ALICE unknown", "alice%40example.org").
            status, detail = ("4.3.0", "try again later") if rule.startswith("4") else ("5.1.1", "user unknown")
            local = address.rsplit("@", 1)[0]
            return f"{rule} {status} <{address}>: {detail}: {local.upper()} {quote(address)}"
        return None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        refusal = await self.refusal_by_rule(address)
        if refusal:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = await self.refusal_by_rule(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(len(line) > MAX_LINE for line in envelope.original_content.split(b"\r\n")):
            return "500 5.5.2 Line too long"
        number = next(self.counter)
        path = self.maildir / f"{number}.eml"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(envelope.original_content)
        os.replace(temporary, path)
        self.event(
            event="message",
            file=path.name,
            mail_from=envelope.mail_from,
            rcpt_tos=envelope.rcpt_tos,
            tls=session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
            authenticated=bool(session.authenticated),
            connection=id(session),
        )
        return "250 Message accepted"


def _keyword_upper(argument: str | None) -> str | None:
    """``from:<a@b>`` as ``FROM:<a@b>``: SMTP's keywords are case-insensitive (RFC 5321 2.4), and
    clients differ (Python 3.13's smtplib sends them in lower case, 3.11's in upper)."""
    keyword, colon, rest = (argument or "").partition(":")
    if colon and keyword.upper() in ("FROM", "TO"):
        return f"{keyword.upper()}:{rest}"
    return argument


class RefusalRecordingSMTP(SMTP):
    """aiosmtpd's server, logging each 4xx or 5xx answer to MAIL, RCPT or DATA as a ``refused`` event,
    whoever refused: a hook of the sink or aiosmtpd itself."""

    STAGES = ("MAIL", "RCPT", "DATA")

    def __init__(self, handler: Sink, *args, **kwargs):
        super().__init__(handler, *args, **kwargs)
        self.stage: str | None = None
        self.argument: str | None = None
        self.envelope_before: tuple[str | None, list[str]] = (None, [])
        for stage in self.STAGES:
            self._smtp_methods[stage] = self._recording_stage(stage, self._smtp_methods[stage])

    def _recording_stage(self, stage: str, method):
        @functools.wraps(method)  # keeps aiosmtpd's syntax attributes, for HELP
        async def recorded(argument):
            self.stage, self.argument = stage, _keyword_upper(argument)
            # DATA empties the envelope before it answers: the sender and recipients as the command found them
            self.envelope_before = (self.envelope.mail_from, list(self.envelope.rcpt_tos))
            try:
                await method(argument)
            finally:
                self.stage = self.argument = None

        return recorded

    async def push(self, status):
        answer = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if self.stage and answer[:1] in ("4", "5"):
            mail_from, rcpt_tos = self.envelope_before
            self.event_handler.event(
                event="refused",
                stage=self.stage,
                argument=self.argument,
                answer=answer,
                mail_from=mail_from,
                rcpt_tos=rcpt_tos,
                connection=id(self.session),
            )
        await super().push(status)


class RefusalRecordingController(Controller):
    def factory(self):
        return RefusalRecordingSMTP(self.handler, **self.SMTP_kwargs)


class Authenticator:
    def __init__(self, user: str, password: str):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.user,
            self.password,
        )
        return AuthResult(success=ok, handled=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--implicit-tls", action="store_true", help="TLS from connect, as on port 465")
    parser.add_argument("--auth-user")
    parser.add_argument("--rule", action="append", default=[], help="ADDRESS=CODE or ADDRESS=sleep:SECONDS")
    options = parser.parse_args(argv)
    options.maildir.mkdir(parents=True, exist_ok=True)
    rules = dict(rule.lower().split("=", 1) for rule in options.rule)
    smtp_options: dict = {"enable_SMTPUTF8": True, "ident": "rq-gevent smtp sink"}
    context = None
    if options.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(options.tls_cert, options.tls_key)
        if not options.implicit_tls:
            smtp_options.update(tls_context=context, require_starttls=True)
    if options.auth_user:
        password = os.environ.get("SMTP_SINK_PASSWORD", "")
        smtp_options.update(
            authenticator=Authenticator(options.auth_user, password),
            auth_required=True,
            # aiosmtpd only knows of TLS begun by STARTTLS; an implicit-TLS connection is encrypted anyway.
            auth_require_tls=not options.implicit_tls,
        )
    controller = RefusalRecordingController(
        Sink(options.maildir, rules),
        hostname=options.host,
        port=options.port,
        ssl_context=context if options.implicit_tls else None,
        **smtp_options,
    )
    controller.start()
    print(f"ready {options.port}", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
