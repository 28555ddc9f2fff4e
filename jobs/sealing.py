"""Seal a secret at enqueue time, open it inside the job: no plaintext in Redis, logs or reprs.

    from jobs.sealing import seal
    q.enqueue(sync_discuz_user, ..., password=seal(form.password))

A job that takes secrets declares them with :func:`takes_secrets`: a call whose arguments do not fit
its signature, or that carries a secret unsealed, fails before the body runs and leaves no copy of
its arguments in the stored job.

The key comes from ``JOBS_SEALING_KEY`` (a Fernet key; ``python -m jobs.sealing genkey`` makes one).
Several comma-separated keys allow rotation: the first seals, any of them opens.  Web app and
workers need the same key; it never travels with the job.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from rq import get_current_job

from jobs.outcomes import PermanentError

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


ERASED_ARGUMENT = "[erased]"
F = TypeVar("F", bound=Callable[..., Any])


class JobArgumentsError(PermanentError):
    """A job's arguments do not fit its signature, or carry a secret unsealed.  Names, never values."""


def takes_secrets(*secret_parameters: str) -> Callable[[F], F]:
    """Decorate a job whose ``secret_parameters`` hold values sealed with :func:`seal`.

    ::

        @takes_secrets("password")
        def create_account(username, password): ...

    rq calls a job as ``func(*args, **kwargs)``: arguments that do not bind to the signature (an
    unknown keyword such as ``passwd=``, one positional too many, a missing one) raise ``TypeError``
    before any line of the job runs, and the stored job keeps them, plaintext included, for its whole
    failure TTL.  The decorated job binds them first; when they do not fit, or a secret parameter
    gets anything but a sealed value, every argument is erased from the running job (rq writes it
    back with the failure) and :class:`JobArgumentsError` says what was wrong, by name.
    ``functools.wraps`` keeps the function's ``__module__``, ``__qualname__`` and marks, so rq stores
    and imports the same dotted name.
    """

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        unknown = [name for name in secret_parameters if name not in signature.parameters]
        if unknown:
            raise TypeError(f"{func.__qualname__} has no parameter {', '.join(unknown)}")

        @functools.wraps(func)
        def job(*args: Any, **kwargs: Any) -> Any:
            refusal = arguments_refusal(job, args, kwargs)
            if refusal is not None:
                erase_arguments_of_current_job("they did not fit its signature or carried a secret unsealed")
                raise JobArgumentsError(f"{func.__qualname__}: {refusal}; the worker erased the job's arguments")
            return func(*args, **kwargs)

        job.__rq_secret_parameters__ = secret_parameters  # type: ignore[attr-defined]
        return job  # type: ignore[return-value]

    return decorate


def arguments_refusal(func: Callable[..., Any], args: tuple | list, kwargs: dict) -> str | None:
    """Why ``func(*args, **kwargs)`` would be refused by :func:`takes_secrets`, or None.

    The message names parameters and counts arguments; it never shows a value.  The enqueue helpers
    call it too, so a mistake fails in the web app before anything reaches Redis.
    """
    signature = inspect.signature(func)
    parameters = signature.parameters
    takes_any_keyword = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    if not takes_any_keyword:
        keywords = {name for name, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        unexpected = [name for name in kwargs if name not in keywords]
        if unexpected:
            return "unexpected keyword argument " + ", ".join(_shown_name(name) for name in unexpected)
    if not any(p.kind is p.VAR_POSITIONAL for p in parameters.values()):
        positional = [p for p in parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(args) > len(positional):
            return f"takes at most {len(positional)} positional arguments, {len(args)} were given"
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        return str(error)  # inspect's own message names parameters only (unknown keywords are handled above)
    for name in getattr(func, "__rq_secret_parameters__", ()):
        value = bound.arguments.get(name)
        if value is not None and Sealed.of(value) is None:
            return f"{name} must be sealed with jobs.sealing.seal() at enqueue time, not a {type(value).__name__}"
    return None


def _shown_name(name: object) -> str:
    """A keyword's name as the error shows it: a caller could pass anything as a name via ``**``."""
    return repr(name) if _is_a_name(name) else "(not a Python name)"


def _is_a_name(name: object) -> bool:
    return isinstance(name, str) and name.isidentifier() and len(name) <= 64


def erase_arguments_of_current_job(reason: str) -> None:
    """Replace every argument value of the running job, and its description, in memory (keyword names
    that are Python names stay, so the stored job still shows which were given).  rq writes the job back when it records
    the failure that follows.  Call it before raising."""
    job = get_current_job()
    if job is None:
        return
    job.args = [ERASED_ARGUMENT for _ in job.args]
    job.kwargs = {
        (name if _is_a_name(name) else f"{ERASED_ARGUMENT}{number}"): ERASED_ARGUMENT
        for number, name in enumerate(job.kwargs)
    }
    job.description = f"{job.func_name}(arguments erased: {reason})"


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
