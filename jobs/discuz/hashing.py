"""UCenter password hashes, over the password's bytes in the forum charset, as UCenter sees them.

UCenter never hashes the password it was given: every argument passes ``uc_addslashes`` (PHP's
``stripslashes`` then ``addslashes``) and is trimmed (PHP's ``trim``) before it is hashed, at
registration and at login alike.  :func:`jobs.discuz.php.uc_input` does the same to the bytes, so a
member created here logs in through the real uc_client with the password the app was given.

1.6: ``md5(md5(password) + salt)`` with a 6-hex-digit salt.  1.7: bcrypt with an empty salt column
(PHP's ``password_hash``; it verifies Python's ``$2b$``), and it still accepts the 1.6 form with a
6-character salt, upgrading it at the next login.  bcrypt runs in gevent's thread pool when gevent
is active, so it never stalls the other jobs in the process (the library releases the GIL).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import bcrypt

from jobs.discuz.php import uc_input

VERSIONS = ("1.6", "1.7")
BCRYPT_ROUNDS = 10  # PHP password_hash's default cost
SALT_LENGTH = 6  # what uc_client 1.6 generates, and the only salted-md5 length 1.7 verifies
BCRYPT_MAX_BYTES = 72  # PHP silently uses only the first 72 bytes; bcrypt >= 4.1 refuses longer input
_SALTED_MD5 = re.compile(r"[0-9a-f]{32}:[0-9A-Za-z]{1,20}")
_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


class HashFormatError(ValueError):
    """A prepared hash is in neither supported form.  The message never includes the value."""


def hash_password(password: str, version: str, charset: str, cost: int = BCRYPT_ROUNDS) -> tuple[str, str]:
    """``(password column, salt column)`` for a new member (``cost``: bcrypt's, for 1.7)."""
    data = uc_input(password, charset)
    if version == "1.6":
        salt = secrets.token_hex(3)
        return salted_md5(data, salt), salt
    if version == "1.7":
        return _off_hub(bcrypt.hashpw, data[:BCRYPT_MAX_BYTES], bcrypt.gensalt(cost)).decode("ascii"), ""
    raise ValueError(f"unknown UCenter version {version!r}; expected one of {VERSIONS}")


def prepared_hash(value: str, version: str) -> tuple[str, str]:
    """Columns for a hash the app computed: ``"<md5 hex>:<salt>"`` (both versions) or bcrypt (1.7)."""
    if _SALTED_MD5.fullmatch(value):
        digest, salt = value.split(":")
        if version == "1.6" and len(salt) > SALT_LENGTH:
            raise HashFormatError("a UCenter 1.6 salt has at most 6 characters (its salt column is char(6))")
        if version == "1.7" and len(salt) != SALT_LENGTH:
            # 1.7's verify_password takes the md5 form only with a 6-character salt; others never log in
            raise HashFormatError("UCenter 1.7 verifies a salted md5 only with a salt of exactly 6 characters")
        return digest, salt
    if _BCRYPT.fullmatch(value):
        if version != "1.7":
            raise HashFormatError("bcrypt hashes need UCenter 1.7")
        return value, ""
    raise HashFormatError("expected '<32 hex md5>:<salt>' or a bcrypt hash")


def make_prepared_hash(password: str, version: str, charset: str) -> str:
    """What an app enqueues (sealed) instead of the password, for the database backend."""
    digest, salt = hash_password(password, version, charset)
    return f"{digest}:{salt}" if salt else digest


def verify_password(password: str, stored: str, salt: str, charset: str) -> bool:
    """UCenter's login check, for tests and the local forum server."""
    data = uc_input(password, charset)
    if salt:
        return hmac.compare_digest(salted_md5(data, salt), stored)
    return bcrypt.checkpw(data[:BCRYPT_MAX_BYTES], stored.encode("ascii"))


def salted_md5(data: bytes, salt: str) -> str:
    inner = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return hashlib.md5((inner + salt).encode("ascii"), usedforsecurity=False).hexdigest()


def _off_hub(function, *args):
    try:
        from gevent import monkey
    except ImportError:
        return function(*args)
    if not monkey.is_module_patched("socket"):
        return function(*args)
    import gevent

    return gevent.get_hub().threadpool.apply(function, args)
