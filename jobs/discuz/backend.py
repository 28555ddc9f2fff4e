"""The three ways uc_client itself creates a member, behind one small interface, and the factory that
picks one from the settings (each backend imports only :mod:`jobs.discuz.account`)."""

from __future__ import annotations

from typing import Protocol

from jobs.discuz.account import Credential, ForumAccount
from jobs.settings import SettingsError, boolean, required_setting, setting

BACKENDS = ("http", "database", "php")
CHARSETS = ("utf-8", "gbk", "big5")


class ForumBackend(Protocol):
    version: str
    charset: str

    def holds_four_byte_utf8(self) -> bool:
        """Whether the forum's tables store characters beyond the BMP (emoji): utf8mb4, not MySQL's utf8."""
        ...

    def get_user(self, username: str) -> ForumAccount | None: ...

    def activate(self, account: ForumAccount, regip: str) -> None:
        """Make the account a forum member now, where the backend can and is asked to (``DISCUZ_ACTIVATE``)."""
        ...

    def register(self, username: str, credential: Credential, email: str, regip: str) -> int:
        """The new uid (> 0), or UCenter's negative return code."""
        ...


def backend_from_settings() -> ForumBackend:
    """The backend ``DISCUZ_BACKEND`` names, configured from the other ``DISCUZ_*`` / ``UC_*`` settings."""
    kind = required_setting("DISCUZ_BACKEND")
    version = setting("DISCUZ_UC_VERSION", "1.7")
    charset = setting("DISCUZ_CHARSET", "utf-8").lower()
    if version not in ("1.6", "1.7"):
        raise SettingsError(f"DISCUZ_UC_VERSION must be 1.6 or 1.7, not {version!r}")
    if charset not in CHARSETS:
        raise SettingsError(f"DISCUZ_CHARSET must be one of {', '.join(CHARSETS)}, not {charset!r}")
    if kind != "database" and setting("DISCUZ_ACTIVATE", False, cast=boolean):
        raise SettingsError("DISCUZ_ACTIVATE needs DISCUZ_BACKEND=database (it writes the forum's member tables)")
    if kind == "http":
        from jobs.discuz.ucenter_http import UCenterHttpBackend

        return UCenterHttpBackend.from_settings(version, charset)
    if kind == "database":
        from jobs.discuz.ucenter_db import UCenterDatabaseBackend

        return UCenterDatabaseBackend.from_settings(version, charset)
    if kind == "php":
        from jobs.discuz.uc_client_php import UcClientPhpBackend

        return UcClientPhpBackend.from_settings(version, charset)
    raise SettingsError(f"DISCUZ_BACKEND must be one of {', '.join(BACKENDS)}, not {kind!r}")
