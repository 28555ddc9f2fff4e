"""Cooperative SMTP delivery with connections reused across jobs in one worker process.

Settings (environment or the worker's ``--config`` module): ``SMTP_HOST`` (localhost), ``SMTP_PORT``
(25, 587 with STARTTLS, 465 with TLS), ``SMTP_SECURITY`` (``starttls``, ``tls`` or ``none``; default
``starttls``), ``SMTP_USER``, ``SMTP_PASSWORD``, ``SMTP_TIMEOUT`` (30 s), ``SMTP_CA_FILE`` (extra CA
bundle), ``SMTP_POOL_SIZE`` (4 connections per process).  Under gevent, smtplib's sockets are
gevent's, so a slow server blocks only the job waiting on it.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from jobs.mail.wire import Outgoing
from jobs.outcomes import PermanentError, TransientError
from jobs.settings import SettingsError, boolean, setting

SECURITY_MODES = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
CHECK_IDLE_AFTER = 5.0  # seconds unused after which a pooled connection is probed with NOOP
MAX_IDLE = 60.0  # seconds unused after which it is closed instead: servers drop idle clients


class SmtpSettings(NamedTuple):
    host: str
    port: int
    security: str
    user: str | None
    password: str | None
    timeout: float
    ca_file: str | None
    pool_size: int
    verify: bool

    def __repr__(self) -> str:
        return f"SmtpSettings({self.user or ''}@{self.host}:{self.port}, {self.security})"

    @classmethod
    def load(cls) -> SmtpSettings:
        security = setting("SMTP_SECURITY", "starttls").lower()
        if security not in SECURITY_MODES:
            raise SettingsError(f"SMTP_SECURITY must be one of {', '.join(SECURITY_MODES)}, not {security!r}")
        return cls(
            host=setting("SMTP_HOST", "localhost"),
            port=setting("SMTP_PORT", DEFAULT_PORTS[security], cast=int),
            security=security,
            user=setting("SMTP_USER") or None,
            password=setting("SMTP_PASSWORD") or None,
            timeout=setting("SMTP_TIMEOUT", 30.0, cast=float),
            ca_file=setting("SMTP_CA_FILE") or None,
            pool_size=setting("SMTP_POOL_SIZE", 4, cast=int),
            verify=setting("SMTP_VERIFY_CERT", True, cast=boolean),
        )


class SmtpPool:
    """At most ``pool_size`` connections to one server; idle ones are reused, newest first."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self._slots = threading.BoundedSemaphore(max(1, settings.pool_size))
        self._idle: list[tuple[smtplib.SMTP, float]] = []
        self.connections_opened = 0

    @contextmanager
    def connection(self) -> Iterator[smtplib.SMTP]:
        with self._slots:
            client = self._reuse() or self._open()
            try:
                yield client
            except BaseException:
                _close(client)
                raise
            self._idle.append((client, time.monotonic()))

    def close(self) -> None:
        while self._idle:
            _close(self._idle.pop()[0])

    def _reuse(self) -> smtplib.SMTP | None:
        while self._idle:
            client, since = self._idle.pop()
            idle = time.monotonic() - since
            if idle < CHECK_IDLE_AFTER:
                return client
            if idle < MAX_IDLE:
                try:
                    if client.noop()[0] == 250:
                        return client
                except (smtplib.SMTPException, OSError):
                    pass
            _close(client)
        return None

    def _open(self) -> smtplib.SMTP:
        settings = self.settings
        context = self._tls_context()
        if settings.security == "tls":
            client = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout, context=context)
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        try:
            client.ehlo()
            if settings.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if settings.user:
                client.login(settings.user, settings.password or "")
        except BaseException:
            _close(client)
            raise
        self.connections_opened += 1
        return client

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.ca_file)
        if not self.settings.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


_pools: dict[SmtpSettings, SmtpPool] = {}


def pool_for(settings: SmtpSettings) -> SmtpPool:
    """The process's pool for these settings (one per distinct server configuration)."""
    pool = _pools.get(settings)
    if pool is None:
        pool = _pools[settings] = SmtpPool(settings)
    return pool


def deliver(message: Outgoing, settings: SmtpSettings | None = None) -> None:
    """Send ``message``'s bytes as they are, to its envelope (never one read back from its headers);
    raises ``PermanentError`` or ``TransientError`` with the server's answer."""
    settings = settings or SmtpSettings.load()
    try:
        with pool_for(settings).connection() as client:
            client.sendmail(message.mail_from, [message.rcpt_to], message.data)
    except (smtplib.SMTPException, OSError) as error:
        raise classify(error, settings) from None


def classify(error: BaseException, settings: SmtpSettings) -> PermanentError | TransientError:
    """4xx, network trouble and timeouts are worth retrying; 5xx and configuration mistakes are not."""
    server = f"{settings.host}:{settings.port}"
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = list(error.recipients.values())
        reason = "; ".join(server_answer(code, text) for code, text in answers)
        if all(400 <= code < 500 for code, _ in answers):
            return TransientError(f"SMTP server {server} deferred the recipient: {reason}")
        return PermanentError(f"SMTP server {server} rejected the recipient: {reason}")
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return PermanentError(f"SMTP server {server} refused the login for SMTP_USER ({error.smtp_code})")
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return PermanentError(f"SMTP server {server} does not support what we need: {error}")
    if isinstance(error, smtplib.SMTPResponseException):
        answer = server_answer(error.smtp_code, error.smtp_error)
        if 400 <= error.smtp_code < 500:
            return TransientError(f"SMTP server {server} answered {answer}")
        return PermanentError(f"SMTP server {server} rejected the message: {answer}")
    if isinstance(error, ssl.SSLCertVerificationError):
        return PermanentError(f"SMTP server {server}: TLS certificate not trusted ({error.verify_message})")
    if isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError):
        return TransientError(f"SMTP server {server} timed out after {settings.timeout:g} s")
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return TransientError(f"SMTP server {server} closed the connection")
    if isinstance(error, OSError):
        return TransientError(f"SMTP server {server} unreachable: {error.strerror or type(error).__name__}")
    return TransientError(f"SMTP error talking to {server}: {type(error).__name__}")


def server_answer(code: int, raw: bytes | str) -> str:
    """A server's answer as the job reports it: the reply code, the enhanced status code (RFC 3463)
    and a fixed description of them, never the server's own text.

    That text quotes the recipient (``<alice@example.com>``, ``alice``, ``ALICE%40EXAMPLE.COM``,
    the display name) in forms no redaction is sure to catch, and it would reach the log, the failed
    job and Sentry.
    """
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    enhanced = _ENHANCED_STATUS.match(text.strip())
    if enhanced and enhanced.group(1) == str(code)[:1]:
        subject, detail = enhanced.group(2), enhanced.group(3)
        meaning = ENHANCED_MEANINGS.get(f"{subject}.{detail}") or ENHANCED_SUBJECTS.get(subject, "other status")
        return f"{code} {enhanced.group(0)} ({meaning}; the server's text is not copied)"
    return f"{code} ({REPLY_MEANINGS.get(code, 'no standard meaning')}; the server's text is not copied)"


_ENHANCED_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?!\S)")
# RFC 5321 4.2.3's reply codes and RFC 3463's status subjects and commonest details.
REPLY_MEANINGS = {
    421: "service not available",
    450: "mailbox unavailable",
    451: "local error in processing",
    452: "insufficient system storage",
    454: "temporary authentication failure",
    500: "syntax error",
    501: "syntax error in parameters",
    502: "command not implemented",
    503: "bad sequence of commands",
    504: "parameter not implemented",
    521: "does not accept mail",
    550: "mailbox unavailable",
    551: "user not local",
    552: "exceeded storage allocation",
    553: "mailbox name not allowed",
    554: "transaction failed",
    555: "MAIL FROM/RCPT TO parameters not recognized",
}
ENHANCED_SUBJECTS = {
    "0": "other status",
    "1": "addressing status",
    "2": "mailbox status",
    "3": "mail system status",
    "4": "network and routing status",
    "5": "mail delivery protocol status",
    "6": "message content or media status",
    "7": "security or policy status",
}
ENHANCED_MEANINGS = {
    "1.1": "bad destination mailbox address",
    "1.2": "bad destination system address",
    "1.3": "bad destination mailbox address syntax",
    "1.6": "destination mailbox has moved",
    "1.8": "bad sender's system address",
    "2.1": "mailbox disabled",
    "2.2": "mailbox full",
    "2.3": "message length exceeds administrative limit",
    "3.0": "other or undefined mail system status",
    "3.4": "message too big for system",
    "4.1": "no answer from host",
    "4.7": "delivery time expired",
    "5.2": "syntax error",
    "7.1": "delivery not authorized, message refused",
    "7.26": "multiple authentication checks failed",
}


def _close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
