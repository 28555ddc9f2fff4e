"""Seal a secret at enqueue time, open it inside the job: no plaintext in Redis, logs or reprs.

    from jobs.sealing import seal
    q.enqueue(sync_discuz_user, ..., password=seal(form.password))

The key comes from ``JOBS_SEALING_KEY`` (a Fernet key; ``python -m jobs.sealing genkey`` makes one).
Several comma-separated keys allow rotation: the first seals, any of them opens.  Web app and
workers need the same key; it never travels with the job.
"""

from __future__ import annotations

import os
import sys

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from rq import get_current_job

KEY_VARIABLE = "JOBS_SEALING_KEY"
MASK = "***"


class SealingError(Exception):
    """The key is missing or wrong, or the sealed value is damaged.  Never carries the secret."""


class Secret:
    """A plaintext secret in memory whose repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a revealed Secret must not be pickled; enqueue a Sealed value instead")


class Sealed(dict):
    """A Fernet token for a secret; safe to enqueue, to log and to show in a description.

    It is the one-key mapping ``{"sealed": token}``, so rq's ``JSONSerializer`` stores it as a plain
    JSON object, and a job gets it back as a dict: :meth:`of` turns either form into a ``Sealed``.
    """

    KEY = "sealed"

    def __init__(self, token: str):
        super().__init__({self.KEY: token})

    @property
    def token(self) -> str:
        return self[self.KEY]

    @classmethod
    def of(cls, value: object) -> Sealed | None:
        """``value`` as a Sealed (it is one, or a JSON round trip of one); None for anything else."""
        if isinstance(value, Sealed):
            return value
        if isinstance(value, dict) and set(value) == {cls.KEY} and isinstance(value[cls.KEY], str):
            return cls(value[cls.KEY])
        return None

    def open(self, keys: str | None = None) -> Secret:
        """Decrypt with ``JOBS_SEALING_KEY`` (or ``keys``)."""
        try:
            plaintext = _fernet(keys).decrypt(self.token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SealingError(
                f"cannot open a sealed value: {KEY_VARIABLE} does not match the key it was sealed with, "
                "or the value is damaged"
            ) from None
        return Secret(plaintext.decode("utf-8"))

    def __repr__(self) -> str:
        return f"Sealed({MASK!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.token == self.token

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self.token)

    def __reduce__(self):
        return (Sealed, (self.token,))

    def __setstate__(self, token: str) -> None:
        # Jobs enqueued before Sealed was a mapping pickled their token as the object's state.
        self[self.KEY] = token


def seal(secret: str, keys: str | None = None) -> Sealed:
    """Encrypt ``secret`` with the first of ``JOBS_SEALING_KEY`` (or ``keys``)."""
    if not isinstance(secret, str):
        raise TypeError(f"seal() takes a str, not {type(secret).__name__}")
    return Sealed(_fernet(keys).encrypt(secret.encode("utf-8")).decode("ascii"))


ERASED = "[erased: enqueued unsealed]"


def erase_from_current_job(*plaintexts: object) -> None:
    """Replace each of ``plaintexts`` in the running job's arguments, and its description, in memory.

    rq writes the job back when it records the failure that follows, so the copy in Redis (``data``
    and ``description``, kept for the failure TTL) no longer holds them.  Call it before raising.
    """
    job = get_current_job()
    if job is None:
        return

    def erased(value: object) -> object:
        return (
            ERASED
            if any(value is plain or (isinstance(value, str) and value == plain) for plain in plaintexts)
            else value
        )

    job.args = [erased(value) for value in job.args]
    job.kwargs = {name: erased(value) for name, value in job.kwargs.items()}
    job.description = f"{job.func_name}(arguments erased: a secret was enqueued unsealed)"


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _fernet(keys: str | None) -> MultiFernet:
    raw = keys if keys is not None else os.environ.get(KEY_VARIABLE, "")
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not parts:
        raise SealingError(f"{KEY_VARIABLE} is not set; generate one with: python -m jobs.sealing genkey")
    try:
        return MultiFernet([Fernet(part.encode("ascii")) for part in parts])
    except (ValueError, UnicodeEncodeError):
        raise SealingError(f"{KEY_VARIABLE} is malformed: each key must be 32 url-safe base64-encoded bytes") from None


def main(argv: list[str]) -> int:
    if argv != ["genkey"]:
        print("usage: python -m jobs.sealing genkey", file=sys.stderr)
        return 2
    print(generate_key())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
