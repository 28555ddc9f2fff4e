"""Strict e-mail addresses: only what every ``email`` package writes verbatim in a header.

An address from user input must be plain ASCII after IDNA encoding of its domain: a dot-atom local
part without ``=?`` (so no RFC 2047 encoded word, which Python's ``email`` decodes while it writes a
header: a CR LF hidden in one became a header line), and a domain of letters, digits and hyphens.  No
control character, space, quote, backslash or angle bracket can pass.  ``email_validator`` checks
the rest (lengths, dots, IDNA, reserved names).  Errors say what is wrong and never quote the
address: ``email_validator``'s own messages do (a domain label, a character), and a failed job's
error reaches the log, Redis and Sentry.
"""

from __future__ import annotations

import re
from email.headerregistry import Address

from email_validator import EmailNotValidError, ValidatedEmail, validate_email

from jobs.outcomes import PermanentError

ADDRESS_MAX = 254  # characters: RFC 5321's 256-octet path, less its angle brackets
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"  # RFC 5322 3.2.3, ASCII only
_LOCAL_PART = re.compile(rf"{_ATEXT}(\.{_ATEXT})*")
_DOMAIN = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_ENCODED_WORD_START = "=?"


class AddressRefused(PermanentError):
    """The address is not one this mailer sends to; the message names the rule, not the address."""


def strict_address(text: object, what: str = "recipient address") -> tuple[str, str]:
    """``(local part, ASCII domain)`` of ``text``, or :class:`AddressRefused` saying which rule failed.

    The domain comes back IDNA-encoded (``xn--``) and lower-cased, as ``email_validator`` normalizes it.
    """
    if not isinstance(text, str):
        raise AddressRefused(f"the {what} must be a string")
    if len(text) > ADDRESS_MAX:
        raise AddressRefused(f"the {what} has {len(text)} characters; at most {ADDRESS_MAX} are accepted")
    if text.count("@") != 1:
        raise AddressRefused(f"the {what} must have exactly one @-sign")
    _check_local_part(text.partition("@")[0], what)
    valid, refusal = _validated(text, what)
    if valid is None:  # raised here, outside the except clause: no chained error quoting the input
        raise AddressRefused(refusal)
    local, domain = valid.ascii_local_part, valid.ascii_domain
    # What goes into the header, checked again: a later email_validator normalizing differently
    # must not get past the rules above.
    _check_local_part(local or "", what)
    if not domain or not _DOMAIN.fullmatch(domain):
        raise AddressRefused(f"the part after the @-sign of the {what} is not an ASCII domain name after IDNA")
    return local, domain


def strict_header_address(text: object, display_name: str = "", what: str = "recipient address") -> Address:
    """:func:`strict_address` as an ``Address`` built from its parts (never parsed from a string)."""
    local, domain = strict_address(text, what)
    return Address(display_name=display_name, username=local, domain=domain)


def _check_local_part(local: str, what: str) -> None:
    if not _LOCAL_PART.fullmatch(local):
        raise AddressRefused(
            f"the part before the @-sign of the {what} must be ASCII letters, digits and "
            "!#$%&'*+-/=?^_`{|}~ between single dots (no quotes, spaces, control or non-ASCII characters)"
        )
    if _ENCODED_WORD_START in local:
        raise AddressRefused(f"the part before the @-sign of the {what} must not contain '=?' (an encoded word)")


def _validated(text: str, what: str) -> tuple[ValidatedEmail | None, str]:
    """``email_validator``'s result, or why it refuses ``text`` in words of ours (its message quotes
    the address)."""
    try:
        return validate_email(text, check_deliverability=False, allow_smtputf8=False), ""
    except EmailNotValidError as error:
        reason = str(error)
    if "too long" in reason or "so many characters" in reason:
        return None, f"the {what} is too long in one of its parts"
    if "before the @-sign" in reason:
        return None, f"the part before the @-sign of the {what} is not valid"
    return None, f"the part after the @-sign of the {what} is not a valid domain name"
