"""UCenter's username and e-mail rules, checked before any network call and by the test server.

A rejected input is data, never executed or interpolated anywhere: the result is only a code.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from jobs.discuz import php
from jobs.discuz.codes import INVALID_EMAIL, INVALID_USERNAME

USERNAME_MIN, USERNAME_MAX = 3, 15
EMAIL_MIN = 7
EMAIL_MAX = {"1.6": 32, "1.7": 255}
_FORBIDDEN = re.compile(r"[\s%,*\"<>&()']")
_GUEST_WORDS = ("\u3000", "游客", "遊客")
_EMAIL = re.compile(r"[A-Za-z0-9\-_.+]+@[A-Za-z0-9\-]+\.[A-Za-z0-9\-.]+")


def username_length(username: str, charset: str) -> int:
    """UCenter's measure, of the name as it checks it (escaped: ``addslashes``): bytes in GBK/Big5, and
    a non-ASCII character counts 2 in UTF-8.  So a backslash counts 2, and so does a GBK character whose
    second byte is 0x5C (3 bytes once escaped)."""
    escaped = php.as_discuz_passes(username, charset)
    if charset.replace("-", "").lower() == "utf8":
        return sum(1 if ord(character) < 128 else 2 for character in escaped.decode("utf-8"))
    return len(escaped)


def check_username(username: str, charset: str, four_byte_utf8: bool = True) -> int:
    """0 when acceptable, else UCenter's code for an invalid username.

    ``four_byte_utf8`` False: the forum's database stores 3-byte UTF-8 only (MySQL's ``utf8``, UCenter
    1.6's default), where a character beyond the BMP (an emoji) cannot be stored, so UCenter refuses it."""
    if not isinstance(username, str) or not username or len(username) > USERNAME_MAX:
        return INVALID_USERNAME
    if not four_byte_utf8 and any(ord(character) > 0xFFFF for character in username):
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


_IP_CHARACTERS = re.compile(r"[0-9A-Fa-f:.]{2,45}")


def valid_regip(regip: object) -> bool:
    """``regip``, the member's sign-up address: empty, or an IPv4/IPv6 address (at most 45 characters).

    Hex digits, colons and dots only: Python takes ``::1%<any text>`` as an address with a scope ID,
    and the forum prints ``regip`` into its pages unescaped."""
    if regip == "":
        return True
    if not isinstance(regip, str) or not _IP_CHARACTERS.fullmatch(regip):
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


def four_byte_utf8(version: str) -> bool:
    """Whether the forum's tables hold 4-byte UTF-8: UCenter 1.7 installs utf8mb4, 1.6 installs ``utf8``."""
    return version != "1.6"


# UCenter 1.6's login takes any 32 word characters for the md5 of the password (control/user.php).
_TAKEN_FOR_AN_MD5 = re.compile(rb"[A-Za-z0-9_]{32}")


def password_problem(password: str, version: str, charset: str, api_only_allowed: bool = False) -> str | None:
    """Why a member with this password could not log in on the forum, or None.

    - Discuz!'s own login and registration forms refuse a password that ``addslashes`` changes
      (``'``, ``"``, ``\\``, NUL, or in GBK/Big5 a character whose encoding holds one of those bytes):
      such an account logs in through uc_client's API only.  ``api_only_allowed`` accepts them.
    - UCenter 1.6 takes a 32-character ``[A-Za-z0-9_]`` password for an md5 at login, so it never matches.
    """
    data = password.encode(charset)
    if php.uc_input(password, charset) in (b"", b"0"):
        # Discuz!'s forms refuse an empty password and "0"; UCenter trims, so spaces alone are empty
        return "the password is empty (or only spaces, or 0) as UCenter reads it, which Discuz!'s own forms refuse"
    if not api_only_allowed and php.escapes_anything(data):
        inside = f" (in {charset} also as a byte inside a character's encoding)" if charset != "utf-8" else ""
        return (
            f"the password holds ', \", \\ or NUL{inside}, which Discuz!'s own login form refuses "
            "(profile_passwd_illegal): the account could never log in on the forum "
            "(DISCUZ_ALLOW_API_ONLY_PASSWORDS=1 creates it anyway)"
        )
    if version == "1.6" and _TAKEN_FOR_AN_MD5.fullmatch(php.uc_input(password, charset)):
        return "UCenter 1.6 takes a password of 32 letters, digits or _ for an md5 hash at login: it could never log in"
    return None
