"""UCenter's username and e-mail rules, checked before any network call and by the test server.

A rejected input is data, never executed or interpolated anywhere: the result is only a code.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from jobs.discuz.codes import INVALID_EMAIL, INVALID_USERNAME

USERNAME_MIN, USERNAME_MAX = 3, 15
EMAIL_MIN = 7
EMAIL_MAX = {"1.6": 32, "1.7": 255}
_FORBIDDEN = re.compile(r"[\s%,*\"<>&()']")
_GUEST_WORDS = ("\u3000", "游客", "遊客")
_EMAIL = re.compile(r"[A-Za-z0-9\-_.+]+@[A-Za-z0-9\-]+\.[A-Za-z0-9\-.]+")


def username_length(username: str, charset: str) -> int:
    """UCenter's measure: bytes in GBK/Big5, and a non-ASCII character counts 2 in UTF-8."""
    if charset.replace("-", "").lower() == "utf8":
        return sum(1 if ord(character) < 128 else 2 for character in username)
    return len(username.encode(charset))


def check_username(username: str, charset: str) -> int:
    """0 when acceptable, else UCenter's code for an invalid username."""
    if not isinstance(username, str) or not username or len(username) > USERNAME_MAX:
        return INVALID_USERNAME
    try:
        username.encode(charset)  # strict: a lone surrogate, or a character the forum cannot store
        length = username_length(username, charset)
    except UnicodeEncodeError:
        return INVALID_USERNAME
    if any(unicodedata.category(character) in ("Cc", "Cf", "Cs", "Co", "Cn") for character in username):
        return INVALID_USERNAME
    if not USERNAME_MIN <= length <= USERNAME_MAX:
        return INVALID_USERNAME
    lowered = username.lower()
    if _FORBIDDEN.search(username) or lowered.startswith(("c:\\con\\con", "guest")):
        return INVALID_USERNAME
    if any(word in username for word in _GUEST_WORDS):
        return INVALID_USERNAME
    return 0


def valid_regip(regip: object) -> bool:
    """``regip``, the member's sign-up address: empty, or an IPv4/IPv6 address (at most 45 characters)."""
    if regip == "":
        return True
    if not isinstance(regip, str) or len(regip) > 45:
        return False
    try:
        ipaddress.ip_address(regip)
    except ValueError:
        return False
    return True


def check_email(email: str, version: str) -> int:
    """0 when acceptable, else UCenter's code for a malformed address."""
    if not isinstance(email, str) or not EMAIL_MIN <= len(email) <= EMAIL_MAX.get(version, EMAIL_MAX["1.7"]):
        return INVALID_EMAIL
    return 0 if _EMAIL.fullmatch(email) else INVALID_EMAIL
