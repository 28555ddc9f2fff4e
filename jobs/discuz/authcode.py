"""UCenter's ``authcode``: how uc_client seals the parameters it sends (identical in 1.6 and 1.7).

An RC4 stream keyed by the communication key and a 4-character IV, with a 10-digit expiry and a
truncated MD5 tag.  It is weak: treat ``UC_KEY`` as a credential and use HTTPS for ``UC_API``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time

IV_LENGTH = 4


def encode(plain: bytes, key: str, expiry: int = 0, iv: str | None = None) -> str:
    """Seal ``plain``; ``expiry`` seconds from now (0 = never)."""
    ka, kb = _subkeys(key)
    iv = iv if iv is not None else _md5(os.urandom(16))[-IV_LENGTH:]
    deadline = b"%010d" % (int(time.time()) + expiry if expiry else 0)
    payload = deadline + _md5(plain + kb.encode("ascii"))[:16].encode("ascii") + plain
    sealed = _rc4(_cryptkey(ka, iv), payload)
    return iv + base64.b64encode(sealed).decode("ascii").replace("=", "")


def decode(token: str, key: str, now: float | None = None) -> bytes | None:
    """Open ``token``; None when the key is wrong, the tag fails, or it has expired."""
    if len(token) <= IV_LENGTH:
        return None
    ka, kb = _subkeys(key)
    iv, body = token[:IV_LENGTH], token[IV_LENGTH:]
    try:
        sealed = base64.b64decode(body + "=" * (-len(body) % 4), validate=False)
    except ValueError:
        return None
    payload = _rc4(_cryptkey(ka, iv), sealed)
    deadline, tag, plain = payload[:10], payload[10:26], payload[26:]
    if not deadline.isdigit():
        return None
    expires_at = int(deadline)
    if expires_at and expires_at <= (now if now is not None else time.time()):
        return None
    if tag != _md5(plain + kb.encode("ascii"))[:16].encode("ascii"):
        return None
    return plain


def _subkeys(key: str) -> tuple[str, str]:
    digest = _md5(key.encode("utf-8"))
    return _md5(digest[:16].encode("ascii")), _md5(digest[16:].encode("ascii"))


def _cryptkey(ka: str, iv: str) -> bytes:
    return (ka + _md5((ka + iv).encode("ascii"))).encode("ascii")


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _rc4(cryptkey: bytes, data: bytes) -> bytes:
    box = list(range(256))
    j = 0
    for i in range(256):
        j = (j + box[i] + cryptkey[i % len(cryptkey)]) % 256
        box[i], box[j] = box[j], box[i]
    out = bytearray(len(data))
    a = j = 0
    for index, byte in enumerate(data):
        a = (a + 1) % 256
        j = (j + box[a]) % 256
        box[a], box[j] = box[j], box[a]
        out[index] = byte ^ box[(box[a] + box[j]) % 256]
    return bytes(out)
