"""The ``send_activation_mail`` job."""

from __future__ import annotations

import logging
import time
from email.headerregistry import Address, HeaderRegistry
from urllib.parse import urlsplit

from rq import Retry, get_current_job

from jobs.mail.address import strict_header_address
from jobs.mail.message import activation_digest, activation_message, activation_message_id, header_text
from jobs.mail.smtp import SmtpSettings, deliver
from jobs.outcomes import PermanentError, TransientError, retry_later
from jobs.settings import required_setting, setting
from rq_gevent import sensitive

SENT_MARK_TTL = 30 * 24 * 3600  # how long a sent activation is remembered, to drop duplicates
SENDING_CLAIM_TTL = 300  # a delivery in flight; expires if its worker dies mid-send
NAME_MAX = 100  # characters of display name kept; header folding costs ~1 ms per character
LINK_MAX = 8000  # characters: what browsers and servers reliably take in a URL

log = logging.getLogger(__name__)


@sensitive  # the activation link is a credential: error reports must not carry it
def send_activation_mail(to: str, name: str, link: str, locale: str = "en") -> dict | Retry:
    """Mail ``name`` <``to``> the activation ``link`` the app generated, once per (address, link).

    Fails at once on an invalid address or a 5xx rejection; retries with backoff on connection
    failures, timeouts and 4xx answers.  Returns ``{"to", "message_id", "sent"}``; ``sent`` is False
    when the same activation had already been delivered.
    """
    recipient = recipient_address(to, name)
    check_link(link)
    sender = sender_address()
    message_id = activation_message_id(recipient.addr_spec, link, sender.domain)
    message = activation_message(
        sender=sender,
        to=recipient,
        message_id=message_id,
        link=link,
        locale=locale,
        site_name=setting("MAIL_SITE_NAME") or sender.display_name or site_of(link),
    )
    outcome = {"to": recipient.addr_spec, "message_id": message_id}
    settings = SmtpSettings.load()
    guard = DeliveryGuard.for_current_job(activation_key(recipient.addr_spec, link))
    state = guard.claim_or_wait(settings.timeout * 2)
    if state == DeliveryGuard.SENT:
        log.info("activation mail %s was already delivered; not sending it again", message_id)
        return {**outcome, "sent": False}
    if state == DeliveryGuard.BUSY:
        return retry_later(TransientError("the same activation mail is being sent by another job"))
    try:
        deliver(message, settings)
    except TransientError as error:
        guard.release()
        return retry_later(error)
    except BaseException:
        guard.release()
        raise
    guard.mark_sent()
    return {**outcome, "sent": True}


def recipient_address(to: str, name: str) -> Address:
    """The validated recipient (see :mod:`jobs.mail.address`); a refusal never quotes ``to``."""
    if not isinstance(to, str) or not isinstance(name, str):
        raise PermanentError("to and name must be strings")
    return strict_header_address(to, display_name(name))


def display_name(name: str) -> str:
    """``name`` as the greeting and the To header show it: one line, no encoded word, at most NAME_MAX."""
    shown = header_text(name[: NAME_MAX * 4])
    if len(shown) > NAME_MAX:
        log.warning("display name of %d characters shortened to %d", len(name), NAME_MAX)
        shown = shown[:NAME_MAX].rstrip()
    return shown


def check_link(link: str) -> None:
    if not isinstance(link, str):
        raise PermanentError("link must be a string")
    if len(link) > LINK_MAX:
        raise PermanentError(f"the activation link has {len(link)} characters; at most {LINK_MAX} are accepted")
    if not link.startswith(("https://", "http://")):
        raise PermanentError("the activation link must be an http:// or https:// URL")
    if any(character.isspace() or not character.isprintable() for character in link):
        raise PermanentError("the activation link must be one URL, without spaces or control characters")
    if not site_of(link):
        raise PermanentError("the activation link names no host")


def site_of(link: str) -> str:
    """The host an activation link points to, without ``www.``: the site's name when none is set."""
    try:
        host = urlsplit(link).hostname or ""
    except ValueError:
        return ""
    return host.removeprefix("www.")


def sender_address() -> Address:
    raw = required_setting("MAIL_FROM")
    try:
        header = HeaderRegistry()("From", raw)
        (address,) = header.addresses
    except (ValueError, IndexError):
        address = None
    if address is None:
        raise PermanentError("MAIL_FROM must be one address, such as 'Example <noreply@example.com>'")
    return strict_header_address(address.addr_spec, header_text(address.display_name), what="MAIL_FROM address")


def activation_key(address: str, link: str) -> str:
    return f"jobs:activation-mail:{activation_digest(address, link)}"


class DeliveryGuard:
    """Remembers in Redis which activations were delivered, so a duplicate job sends nothing.

    A job first claims the key (SET NX, short TTL), and marks it sent (long TTL) after the server
    accepted the message, or releases it when delivery failed.  Outside a worker there is no Redis
    connection to share, and every call sends.
    """

    FREE, SENT, BUSY = "free", "sent", "busy"

    def __init__(self, connection, key: str):
        self.connection = connection
        self.key = key

    @classmethod
    def for_current_job(cls, key: str) -> DeliveryGuard:
        job = get_current_job()
        return cls(job.connection if job is not None else None, key)

    def claim(self) -> str:
        if self.connection is None:
            return self.FREE
        if self.connection.set(self.key, "sending", nx=True, ex=SENDING_CLAIM_TTL):
            return self.FREE
        value = self.connection.get(self.key)
        if value is None:
            return self.claim()
        return self.SENT if value == b"sent" else self.BUSY

    def claim_or_wait(self, patience: float) -> str:
        """Claim; while another job holds the claim, wait up to ``patience`` s for its outcome."""
        deadline = time.monotonic() + patience
        state = self.claim()
        while state == self.BUSY and time.monotonic() < deadline:
            time.sleep(0.2)
            state = self.claim()
        return state

    def mark_sent(self) -> None:
        if self.connection is not None:
            self.connection.set(self.key, "sent", ex=SENT_MARK_TTL)

    def release(self) -> None:
        if self.connection is not None:
            self.connection.delete(self.key)
