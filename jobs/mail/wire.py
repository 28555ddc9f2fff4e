"""The exact bytes an SMTP server gets, checked against the message that was meant before they go.

``email`` may rewrite a header while it serializes it (decode an encoded word, fold, re-quote), and
what it does differs between Python releases.  So the check is on its output: the bytes are parsed
back and must give exactly the headers the message object holds, each once, with the intended To and
From addresses, display names and Subject, and the same MIME structure; the header block must be
ASCII, with no control character but the CR LF that ends each line.  A message that fails is never
sent, and the error names the failed rule only.  The envelope is given explicitly, never derived
from the headers.
"""

from __future__ import annotations

import re
import unicodedata
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP, default
from typing import NamedTuple, NoReturn

from jobs.outcomes import PermanentError

_HEADER_LINE = re.compile(rb"([!-9;-~]+):|[ \t]")  # a field name and its colon, or a folded continuation

_NOT_IN_ONE_LINE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


class Outgoing(NamedTuple):
    """One message as smtplib's ``sendmail`` takes it."""

    mail_from: str
    rcpt_to: str
    data: bytes


class MessageMismatch(PermanentError):
    """The serialized message does not parse back to what was built; it was not sent."""


def outgoing(message: EmailMessage, sender: Address, recipient: Address, subject: str) -> Outgoing:
    """``message`` serialized as SMTP wants it, after :func:`check_wire` found it to be what was meant."""
    try:
        data = message.as_bytes(policy=SMTP)
    except (MessageError, ValueError):  # 3.11.10+'s HeaderWriteError quotes the header: not chained
        data = None
    if data is None:
        _mismatch("email refused to serialize it")
    check_wire(data, [name.lower() for name in message.keys()], sender, recipient, subject, message)
    return Outgoing(sender.addr_spec, recipient.addr_spec, data)


def check_wire(
    data: bytes, header_names: list[str], sender: Address, recipient: Address, subject: str, built: EmailMessage
) -> None:
    """Raise :class:`MessageMismatch` unless ``data`` is exactly the intended message."""
    block, separator, _ = data.partition(b"\r\n\r\n")
    if not separator:
        _mismatch("no end of the header block")
    lines = block.split(b"\r\n")
    if any(byte < 0x20 and byte != 0x09 or byte > 0x7E for line in lines for byte in line):
        _mismatch("a header holds a control or non-ASCII byte")
    names = []
    for line in lines:
        match = _HEADER_LINE.match(line)
        if match is None:
            _mismatch("a header line is neither a field nor a continuation")
        if match.group(1) is not None:
            names.append(match.group(1).decode("ascii").lower())
    if names != header_names:
        _mismatch("the header fields differ from the ones set")
    try:
        problem = _parse_back_problem(data, sender, recipient, subject, built)
    except Exception:  # 3.13's parser raises ValueError on some of what its own generator wrote
        problem = "email cannot parse it back"
    if problem is not None:
        _mismatch(problem)


def _parse_back_problem(
    data: bytes, sender: Address, recipient: Address, subject: str, built: EmailMessage
) -> str | None:
    parsed = BytesParser(policy=default).parsebytes(data)
    if parsed.defects:
        return "the message parses with defects"
    for field, intended in (("To", recipient), ("From", sender)):
        header = parsed[field]
        if header.defects or len(header.addresses) != 1:
            return f"the {field} header is not one well-formed address"
        (address,) = header.addresses
        if address.addr_spec != intended.addr_spec:
            return f"the {field} address differs from the validated one"
        if not _same_text(address.display_name, intended.display_name):
            return f"the {field} display name differs"
    if not _same_text(parsed["Subject"], subject):
        return "the Subject differs"
    if _structure(parsed) != _structure(built):
        return "the MIME structure differs"
    return None


def _same_text(parsed: str, intended: str) -> bool:
    """Equal but for where whitespace falls (Python's parser adds a space between adjacent encoded
    words of a long name; mail clients do not), and free of control or separator characters."""
    if any(unicodedata.category(character) in _NOT_IN_ONE_LINE for character in parsed):
        return False
    return "".join(parsed.split()) == "".join(intended.split())


def _structure(message: EmailMessage) -> list[str]:
    return [part.get_content_type() for part in message.walk()]


def _mismatch(rule: str) -> NoReturn:
    raise MessageMismatch(f"the built message is not what was meant ({rule}); it was not sent")
