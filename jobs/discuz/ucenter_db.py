"""Writing the member straight into UCenter's tables, as uc_client's ``UC_CONNECT='mysql'`` mode does.

PyMySQL is pure Python, so under the worker's gevent patching every query yields to other jobs.
One transaction per registration: the member row and its memberfields row land together or not at
all.  The username's unique key settles races between two jobs: the loser sees code -3.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import pymysql

from jobs.discuz import activation, hashing
from jobs.discuz.account import Credential, ForumAccount
from jobs.discuz.codes import EMAIL_EXISTS, USERNAME_EXISTS
from jobs.discuz.errors import ForumConfigError, ForumUnavailable
from jobs.discuz.mysql_errors import DUPLICATE_KEY, database_error, describe_mysql_error
from jobs.sealing import Secret
from jobs.settings import boolean, required_setting, setting

MYSQL_CHARSETS = {"utf-8": "utf8mb4", "gbk": "gbk", "big5": "big5"}


log = logging.getLogger(__name__)
THREE_BYTE_UTF8 = ("utf8", "utf8mb3")


class MemberColumns(NamedTuple):
    username_charset: str
    regip_width: int


_MEMBER_COLUMNS: dict[tuple, MemberColumns] = {}  # per server, database and table, for the process's life


class UCenterDatabaseBackend:
    def __init__(
        self,
        connect_args: dict,
        version: str,
        charset: str,
        table_prefix: str = "pre_ucenter_",
        unique_email: bool | None = None,
        activate_with_prefix: str | None = None,
    ):
        table_prefix = _table_prefix(table_prefix, "DISCUZ_DB_TABLE_PREFIX")
        self._connect_args = connect_args
        self.version = version
        self.charset = charset
        self._members_table = f"{table_prefix}members"
        self.members = f"`{table_prefix}members`"
        self.memberfields = f"`{table_prefix}memberfields`"
        self.settings_table = f"`{table_prefix}settings`"
        self.unique_email = unique_email
        if activate_with_prefix is not None:
            activate_with_prefix = _table_prefix(activate_with_prefix, "DISCUZ_FORUM_TABLE_PREFIX")
        self.activate_with_prefix = activate_with_prefix

    @classmethod
    def from_settings(cls, version: str, charset: str) -> UCenterDatabaseBackend:
        timeout = setting("DISCUZ_DB_TIMEOUT", 10.0, cast=float)
        activate = setting("DISCUZ_ACTIVATE", False, cast=boolean)
        return cls(
            connect_args={
                "host": setting("DISCUZ_DB_HOST", "localhost"),
                "port": setting("DISCUZ_DB_PORT", 3306, cast=int),
                "user": required_setting("DISCUZ_DB_USER"),
                "password": setting("DISCUZ_DB_PASSWORD", ""),
                "database": required_setting("DISCUZ_DB_NAME"),
                "connect_timeout": timeout,
                "read_timeout": timeout,
                "write_timeout": timeout,
            },
            version=version,
            charset=charset,
            table_prefix=setting("DISCUZ_DB_TABLE_PREFIX", "pre_ucenter_"),
            unique_email=setting("DISCUZ_UNIQUE_EMAIL", None, cast=boolean),
            activate_with_prefix=setting("DISCUZ_FORUM_TABLE_PREFIX", "pre_") if activate else None,
        )

    def __repr__(self) -> str:
        args = self._connect_args
        return f"UCenterDatabaseBackend({args['user']}@{args['host']}:{args['port']}/{args['database']})"

    def get_user(self, username: str) -> ForumAccount | None:
        with self._connection() as connection, connection.cursor() as cursor:
            row = self._find(cursor, username)
        return ForumAccount(*row) if row else None

    def holds_four_byte_utf8(self) -> bool:
        """Whether the members table's username column stores characters beyond the BMP (utf8mb4)."""
        return self._member_columns().username_charset not in THREE_BYTE_UTF8

    def register(self, username: str, credential: Credential, email: str, regip: str) -> int:
        password, salt = self._columns(credential)
        # UCenter runs with sql_mode='', so MySQL cuts an IPv6 address to 1.6's char(15): do the same.
        regip = regip[: self._member_columns().regip_width]
        with self._connection() as connection, connection.cursor() as cursor:
            try:
                if self._find(cursor, username):
                    return USERNAME_EXISTS
                if self.activate_with_prefix is not None:
                    self._refuse_missing_forum_tables(cursor)
                unique = self._unique_email(cursor)
                if unique and cursor.execute(f"SELECT 1 FROM {self.members} WHERE email=%s", (email,)):
                    return EMAIL_EXISTS
                cursor.execute(self._insert_member_sql(), self._member_values(username, password, salt, email, regip))
                uid = cursor.lastrowid
                cursor.execute(f"INSERT INTO {self.memberfields} (uid, blacklist) VALUES (%s, '')", (uid,))
                if self.activate_with_prefix is not None:
                    activation.activate(cursor, self.activate_with_prefix, uid, username, email, regip)
                connection.commit()
            except pymysql.err.IntegrityError as error:
                connection.rollback()
                if error.args and error.args[0] == DUPLICATE_KEY:
                    return USERNAME_EXISTS
                raise ForumConfigError(f"UCenter tables refused the member: MySQL {error.args[0]}") from None
            return uid

    def activate(self, account: ForumAccount, regip: str) -> None:
        """With ``DISCUZ_ACTIVATE``: the forum's member rows for an existing account that lacks them (one
        registered before the setting was on), in a transaction of its own.  A new member's are written
        by :meth:`register`, in the same transaction as the member."""
        if self.activate_with_prefix is None:
            return
        prefix = self.activate_with_prefix
        with self._connection() as connection, connection.cursor() as cursor:
            found = activation.forum_member_uid(cursor, prefix, account.uid, account.username)
            if found == account.uid:
                return
            if found is not None:  # another member's row holds the name: not ours to replace from here
                log.warning("forum member row for uid %d not written: its username is another uid's", account.uid)
                return
            self._refuse_missing_forum_tables(cursor)
            activation.activate(cursor, prefix, account.uid, account.username, account.email, regip)
            connection.commit()

    def _refuse_missing_forum_tables(self, cursor) -> None:
        missing = activation.missing_tables(cursor, self.activate_with_prefix)
        if missing:
            raise ForumConfigError(
                f"DISCUZ_ACTIVATE: the forum's tables {', '.join(missing)} are missing "
                "(check DISCUZ_FORUM_TABLE_PREFIX, and that they are in DISCUZ_DB_NAME)"
            )

    def _unique_email(self, cursor) -> bool:
        """``DISCUZ_UNIQUE_EMAIL`` when set, else the forum's own rule: UCenter's ``doublee`` setting
        (1 allows a second account per e-mail), refusing duplicates when it has none, as UCenter does."""
        if self.unique_email is not None:
            return self.unique_email
        try:
            cursor.execute(f"SELECT v FROM {self.settings_table} WHERE k='doublee'")
        except pymysql.err.ProgrammingError:  # no settings table: a bare members schema
            return True
        row = cursor.fetchone()
        return row is None or str(row[0]).strip() != "1"

    def _columns(self, credential: Credential) -> tuple[str, str]:
        if credential.prepared_hash is not None:
            try:
                return hashing.prepared_hash(credential.prepared_hash.reveal(), self.version)
            except hashing.HashFormatError as error:
                raise ForumConfigError(f"the prepared password hash is unusable: {error}") from None
        assert isinstance(credential.password, Secret)
        return hashing.hash_password(credential.password.reveal(), self.version, self.charset)

    def _member_columns(self) -> MemberColumns:
        """The target's own widths and charsets (1.6 and 1.7 differ, and upgraded forums differ again)."""
        where = (*(self._connect_args[name] for name in ("host", "port", "database")), self._members_table)
        if where not in _MEMBER_COLUMNS:
            with self._connection() as connection, connection.cursor() as cursor:
                cursor.execute(
                    "SELECT COLUMN_NAME, CHARACTER_MAXIMUM_LENGTH, CHARACTER_SET_NAME FROM information_schema.COLUMNS"
                    " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME IN ('username', 'regip')",
                    (self._members_table,),
                )
                found = {name.lower(): (width, charset) for name, width, charset in cursor.fetchall()}
            if set(found) != {"username", "regip"}:
                raise ForumConfigError(
                    f"no UCenter members table {self._members_table} with username and regip columns "
                    "(check DISCUZ_DB_NAME and DISCUZ_DB_TABLE_PREFIX)"
                )
            _MEMBER_COLUMNS[where] = MemberColumns(found["username"][1] or "", int(found["regip"][0] or 0))
        return _MEMBER_COLUMNS[where]

    def _find(self, cursor, username: str) -> tuple | None:
        cursor.execute(f"SELECT uid, username, email FROM {self.members} WHERE username=%s", (username,))
        return cursor.fetchone()

    def _insert_member_sql(self) -> str:
        columns = "username, password, email, myid, myidkey, regip, regdate, lastloginip, lastlogintime, salt, secques"
        if self.version == "1.7":
            columns += ", secmobicc, secmobile"
        placeholders = ", ".join(["%s"] * len(columns.split(",")))
        return f"INSERT INTO {self.members} ({columns}) VALUES ({placeholders})"

    def _member_values(self, username: str, password: str, salt: str, email: str, regip: str) -> tuple:
        values = (username, password, email, "", "", regip, int(time.time()), 0, 0, salt, "")
        return values + ("", "") if self.version == "1.7" else values

    def _connection(self) -> _Connection:
        return _Connection(self._connect_args, MYSQL_CHARSETS[self.charset])


def _table_prefix(value: str, setting_name: str) -> str:
    """A table prefix, safe to put between backticks: letters, digits and underscores only."""
    if not value.replace("_", "").isalnum():
        raise ForumConfigError(f"{setting_name} may hold only letters, digits and underscores")
    return value


class _Connection:
    """A PyMySQL connection for one call, with MySQL errors sorted into give-up and try-again."""

    def __init__(self, connect_args: dict, charset: str):
        self._connect_args = connect_args
        self._charset = charset
        self._connection: pymysql.connections.Connection | None = None

    def __enter__(self) -> pymysql.connections.Connection:
        try:
            self._connection = pymysql.connect(charset=self._charset, autocommit=False, **self._connect_args)
        except pymysql.err.MySQLError as error:
            raise _classified(error) from None
        return self._connection

    def __exit__(self, kind, error, traceback) -> bool:
        try:
            self._connection.close()
        except pymysql.err.Error:
            pass
        if isinstance(error, pymysql.err.MySQLError):
            raise _classified(error) from None
        return False


def _classified(error: pymysql.err.MySQLError) -> Exception:
    code = error.args[0] if error.args and isinstance(error.args[0], int) else None
    if isinstance(error, pymysql.err.InterfaceError):
        return ForumUnavailable(f"UCenter database unavailable: MySQL {code}: {describe_mysql_error(code)}")
    return database_error(code, "UCenter database")
