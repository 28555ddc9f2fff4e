"""What every forum backend takes and returns: a forum account, and the credential of a new one."""

from __future__ import annotations

from typing import NamedTuple

from jobs.sealing import Secret


class ForumAccount(NamedTuple):
    uid: int
    username: str
    email: str


class Credential(NamedTuple):
    """Exactly one of: the password, or a prepared hash (database backend only); both masked in reprs."""

    password: Secret | None = None
    prepared_hash: Secret | None = None
