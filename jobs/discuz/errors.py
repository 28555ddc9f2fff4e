"""What can go wrong talking to UCenter, sorted into give-up and try-again."""

from __future__ import annotations

from jobs.discuz.codes import describe
from jobs.outcomes import PermanentError, TransientError


class ForumConfigError(PermanentError):
    """The forum refused us, not the user: wrong key, appid, credentials, tables, or a protocol mismatch."""


class ForumRejected(PermanentError):
    """UCenter refused the registration itself (its return code), or would: the input breaks its rules.

    ``code`` is None for an input UCenter has no code for (a malformed ``regip``)."""

    def __init__(self, code: int | None, reason: str | None = None):
        super().__init__(f"UCenter refused the registration: {reason or describe(code)}")
        self.code = code


class ForumConflict(PermanentError):
    """The forum already has this username with another e-mail: someone else's account, never touched."""


class ForumUnavailable(TransientError):
    """The forum could not be reached or answered with a temporary failure."""
