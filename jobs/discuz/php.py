"""PHP's string functions as UCenter applies them, byte by byte over text in the forum charset.

Discuz! escapes a username with ``addslashes`` before it hands it to uc_client, and uc_client and
uc_server strip one level of slashes from every argument (``addslashes(stripslashes(x))``) before
they use it.  Working on the encoded bytes, like PHP, matters: in GBK and Big5 a character's second
byte can be 0x5C, the backslash, and PHP escapes and strips it like any other.
"""

from __future__ import annotations

_TRIMMED = b" \t\n\r\0\x0b"
_ESCAPED = b"'\"\\"


def addslashes(data: bytes) -> bytes:
    """PHP's ``addslashes``: a backslash before ``'``, ``"`` and ``\\``; NUL becomes ``\\0``."""
    out = bytearray()
    for byte in data:
        if byte == 0:
            out += b"\\0"
        elif byte in _ESCAPED:
            out += b"\\" + bytes([byte])
        else:
            out.append(byte)
    return bytes(out)


def stripslashes(data: bytes) -> bytes:
    """PHP's ``stripslashes``: drop each backslash and keep what it escapes (``\\0`` is NUL)."""
    out = bytearray()
    index = 0
    while index < len(data):
        byte = data[index]
        if byte == 0x5C:
            index += 1
            if index < len(data):
                out.append(0 if data[index] == 0x30 else data[index])
        else:
            out.append(byte)
        index += 1
    return bytes(out)


def escapes_anything(data: bytes) -> bool:
    """``data != addslashes(data)``: Discuz's test for a password its own forms refuse."""
    return any(byte == 0 or byte in _ESCAPED for byte in data)


def uc_input(text: str, charset: str) -> bytes:
    """``text`` in ``charset`` as UCenter's code handles a password: ``trim(addslashes(stripslashes(x)))``."""
    return addslashes(stripslashes(text.encode(charset))).strip(_TRIMMED)


def as_discuz_passes(text: str, charset: str) -> bytes:
    """A username as Discuz! hands it to ``uc_user_register`` and ``uc_get_user``: ``addslashes(name)``."""
    return addslashes(text.encode(charset))
