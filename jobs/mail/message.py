"""Building the activation message: multipart text + HTML, every header encoded as RFC 5322/2047 want.

Every address in a header was checked by :mod:`jobs.mail.address` and is built from its parts;
all other text from user input that reaches a header (the display name, the Subject) passes
:func:`header_text` first: no control character, no line separator and no RFC 2047 encoded word
survives it.  The result is then checked as the bytes that will be sent (:mod:`jobs.mail.wire`), so
no input can add a header line, whatever the Python version's ``email`` package does.  Bodies go out 7bit only
when every line fits SMTP's 998 bytes, else quoted-printable or base64.

Templates are ``string.Template`` files, ``<locale>/activation.subject.txt``, ``activation.txt`` and
``activation.html``; ``$name``, ``$link`` and ``$site_name`` are filled in (HTML-escaped in the HTML
part).  A site overrides any of them by putting files of the same names under ``MAIL_TEMPLATE_DIR``.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from importlib.resources import files
from pathlib import Path
from string import Template

from jobs.mail.wire import Outgoing, outgoing
from jobs.outcomes import PermanentError
from jobs.settings import setting

# Package data, read the same way from a wheel, a zip or a checkout.
BUILTIN_TEMPLATES = files("jobs.mail") / "templates"
LOCALES = ("en", "zh")  # built in; MAIL_TEMPLATE_DIR may add more
_LOCALE = re.compile(r"[a-z]{2,3}(_[A-Za-z]{2,4})?")
_PARTS = ("activation.subject.txt", "activation.txt", "activation.html")
SMTP_MAX_LINE = 998  # bytes per line, CRLF excluded (RFC 5321 4.5.3.1.6)
_ENCODED_WORD_START = re.compile(r"=\s*\?")


def header_text(value: str) -> str:
    """``value`` fit for a header: control, format and separator characters become spaces, runs of
    whitespace one space, and ``=?`` (which could start an RFC 2047 encoded word) ``= ?``."""
    cleaned = "".join(" " if unicodedata.category(character)[0] in "CZ" else character for character in value)
    return _ENCODED_WORD_START.sub("= ?", " ".join(cleaned.split()))


def activation_message(
    sender: Address, to: Address, message_id: str, link: str, locale: str, site_name: str
) -> Outgoing:
    """The activation mail to ``to`` (greeted by its display name), checked as it will be sent."""
    subject_template, text, markup = (_template(locale, part) for part in _PARTS)
    plain_values = {"name": to.display_name, "link": link, "site_name": site_name}
    html_values = {key: html.escape(value, quote=True) for key, value in plain_values.items()}
    subject = header_text(subject_template.safe_substitute(plain_values))
    message = EmailMessage(policy=SMTP)
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    body = text.safe_substitute(plain_values)
    message.set_content(body, cte=_transfer_encoding(body))
    body = markup.safe_substitute(html_values)
    message.add_alternative(body, subtype="html", cte=_transfer_encoding(body))
    return outgoing(message, sender, to, subject)


def activation_digest(address: str, link: str) -> str:
    """Identifies one activation (address, any case, and link): job id, Message-ID and duplicate mark."""
    return hashlib.sha256(f"{address.lower()}\n{link}".encode()).hexdigest()


def activation_message_id(address: str, link: str, domain: str) -> str:
    """Stable per activation, so a mail that is ever sent twice is recognisably one message."""
    return f"<activation.{activation_digest(address, link)[:32]}@{domain or 'localhost'}>"


def _transfer_encoding(body: str) -> str:
    """7-bit safe on the wire, so no relay without 8BITMIME can mangle a Chinese body, and no line
    over SMTP's limit (a long activation link, such as a JWT, is wrapped by quoted-printable)."""
    if not body.isascii():
        return "base64"
    fits = all(len(line) <= SMTP_MAX_LINE - 2 for line in body.splitlines())
    return "7bit" if fits else "quoted-printable"


def _template(locale: str, part: str) -> Template:
    if not isinstance(locale, str) or not _LOCALE.fullmatch(locale):
        raise PermanentError("the locale is not a language code such as 'en' or 'zh'")
    override_dir = setting("MAIL_TEMPLATE_DIR")
    for base in ([Path(override_dir)] if override_dir else []) + [BUILTIN_TEMPLATES]:
        path = base / locale / part
        if path.is_file():
            return Template(path.read_text(encoding="utf-8"))
    raise PermanentError(f"no template {locale}/{part}; built in: {', '.join(LOCALES)}, more in MAIL_TEMPLATE_DIR")
