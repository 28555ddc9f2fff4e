"""MySQL error codes, as UCenter's database reports them to each backend, sorted into give-up and try-again.

The direct database backend gets them from PyMySQL; the ``php`` backend from uc_client's ``halt()``
page or mysqli, through the bridge; the ``http`` backend from uc_server's ``halt()`` page.  Only the
code is kept: the server's message quotes the member's data.
"""

from __future__ import annotations

from jobs.discuz.errors import ForumConfigError, ForumUnavailable

# Worth another attempt: server gone or unreachable, lock wait, deadlock, too many connections.
TRANSIENT_ERRORS = {2002, 2003, 2006, 2013, 1205, 1213, 1040, 1053}
DUPLICATE_KEY = 1062


def database_error(code: int | None, whose: str) -> Exception:
    """The job's error for MySQL error ``code`` met by ``whose`` ("UCenter database", "uc_client's database")."""
    if code in TRANSIENT_ERRORS:
        return ForumUnavailable(f"{whose} unavailable: MySQL {code}: {describe_mysql_error(code)}")
    return ForumConfigError(f"{whose} refused us: MySQL {code}: {describe_mysql_error(code)}")


def describe_mysql_error(code: int | None) -> str:
    """A fixed description of a MySQL error code; the server's message itself is never copied.

    Server messages quote the member's data ("Duplicate entry 'alice'", "Incorrect string value",
    a trigger's ``SIGNAL`` text built from ``NEW.username``) in forms no redaction is sure to catch,
    and this text reaches the log, the failed job and Sentry.  The code is what a reader looks up."""
    return MYSQL_ERRORS.get(code, "see the MySQL/MariaDB manual for this error code")


MYSQL_ERRORS = {
    1040: "Too many connections",
    1044: "Access denied to the database",
    1045: "Access denied (check DISCUZ_DB_USER and DISCUZ_DB_PASSWORD)",
    1049: "Unknown database (check DISCUZ_DB_NAME)",
    1053: "Server shutdown in progress",
    1054: "Unknown column (check DISCUZ_UC_VERSION against the tables)",
    1062: "Duplicate entry",
    1142: "Command denied to the user (check its grants)",
    1146: "Table does not exist (check DISCUZ_DB_TABLE_PREFIX)",
    1205: "Lock wait timeout exceeded",
    1213: "Deadlock found",
    1264: "Value out of range for a column",
    1292: "Incorrect value for a column",
    1366: "Incorrect string value for a column (check DISCUZ_CHARSET)",
    1406: "Data too long for a column",
    1644: "Refused by a trigger or stored routine (SIGNAL)",
    2002: "Cannot connect to the server (through its socket, or refused)",
    2003: "Cannot connect to the server",
    2006: "Server has gone away",
    2013: "Lost connection to the server during a query",
}
