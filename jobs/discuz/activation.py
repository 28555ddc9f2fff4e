"""The forum's own member rows, for a new UCenter member: what Discuz! writes at first login with
"allow direct activation" (``fastactivation``) on, written by the ``database`` backend instead.

Discuz! keeps a member in six tables (``common_member`` and its ``_status``, ``_count``, ``_profile``,
``_field_forum``, ``_field_home``); at activation it fills the few columns below and leaves the rest
to their defaults.  Forum versions add columns, so each insert names only the columns the table has,
and gives a column that is NOT NULL without a default the empty value of its type, as Discuz!'s
``sql_mode=''`` connection would.  The group and starting credits come from the forum's settings
(``regverify``: members wait in group 8 for e-mail verification; else the member group whose credit
range holds the starting credits, ``initcredits``, as Discuz! derives its new-member group).
"""

from __future__ import annotations

import re
import secrets
import time

NUMERIC_TYPES = ("int", "tinyint", "smallint", "mediumint", "bigint", "decimal", "float", "double")
AWAITING_VERIFICATION_GROUP = 8
DEFAULT_NEW_MEMBER_GROUP = 10


TABLES = (
    "common_member",
    "common_member_status",
    "common_member_count",
    "common_member_profile",
    "common_member_field_forum",
    "common_member_field_home",
)
_PHP_INTEGER = re.compile(r"\s*([+-]?[0-9]+)")


def missing_tables(cursor, prefix: str) -> list[str]:
    """The forum's member tables (and its settings table) that the database lacks, with their prefix.

    Checked before UCenter's member is inserted: on MyISAM tables (X3.4's installer makes them) a
    failed activation could not roll that insert back."""
    names = [f"{prefix}{table}" for table in (*TABLES, "common_setting", "common_usergroup")]
    cursor.execute(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        f" AND TABLE_NAME IN ({', '.join(['%s'] * len(names))})",
        names,
    )
    found = {row[0] for row in cursor.fetchall()}
    return [name for name in names if name not in found]


def forum_member_uid(cursor, prefix: str, uid: int, username: str) -> int | None:
    """The uid of the forum member row for ``uid`` or, failing that, for ``username``; None without one."""
    if cursor.execute(f"SELECT uid FROM `{prefix}common_member` WHERE uid=%s", (uid,)):
        return uid
    if cursor.execute(f"SELECT uid FROM `{prefix}common_member` WHERE username=%s", (username,)):
        return int(cursor.fetchone()[0])
    return None


def activate(cursor, prefix: str, uid: int, username: str, email: str, regip: str) -> None:
    """Write the forum member rows for ``uid`` in the caller's transaction.

    Like Discuz!'s own activation, each row replaces one with the same key: a stale row left for this
    uid, or for this username, by a member deleted from UCenter alone."""
    settings = _forum_settings(cursor, prefix)
    credits = _credits(settings.get("initcredits", ""))
    if settings.get("regverify", "") not in ("", "0"):  # PHP's truthiness, as Discuz! tests it
        group = AWAITING_VERIFICATION_GROUP
    else:
        group = _group_for_credits(cursor, prefix, credits[0])
    now = int(time.time())
    rows = {
        "common_member": {
            "uid": uid,
            "username": username,
            "password": secrets.token_hex(16),  # unused: the forum checks passwords in UCenter
            "email": email,
            "adminid": 0,
            "groupid": group,
            "regdate": now,
            "emailstatus": 0,
            "credits": credits[0],
            "timeoffset": "9999",
        },
        "common_member_status": {"uid": uid, "regip": regip, "lastip": regip, "lastvisit": now, "lastactivity": now},
        "common_member_count": {"uid": uid, **{f"extcredits{index}": credits[index] for index in range(1, 9)}},
        "common_member_profile": {"uid": uid},
        "common_member_field_forum": {"uid": uid},
        "common_member_field_home": {"uid": uid},
    }
    for table, values in rows.items():
        _replace(cursor, f"{prefix}{table}", values)


def _forum_settings(cursor, prefix: str) -> dict[str, str]:
    cursor.execute(f"SELECT skey, svalue FROM `{prefix}common_setting` WHERE skey IN ('regverify', 'initcredits')")
    return {str(key): str(value) for key, value in cursor.fetchall()}


def _group_for_credits(cursor, prefix: str, credits: int) -> int:
    """The group Discuz! gives a new member (its cached ``newusergroupid``): the one whose credit range
    holds the starting credits."""
    cursor.execute(
        f"SELECT groupid FROM `{prefix}common_usergroup` WHERE %s >= creditshigher AND %s < creditslower LIMIT 1",
        (credits, credits),
    )
    row = cursor.fetchone()
    return int(row[0]) if row else DEFAULT_NEW_MEMBER_GROUP


def _credits(initcredits: str) -> list[int]:
    values = [_php_intval(part) for part in initcredits.split(",")]
    return (values + [0] * 9)[:9]


def _php_intval(text: str) -> int:
    """PHP's ``intval`` of a setting: its leading integer, else 0 (``"+3x"`` is 3, ``"abc"`` is 0)."""
    found = _PHP_INTEGER.match(text)
    return int(found.group(1)) if found else 0


def _replace(cursor, table: str, values: dict) -> None:
    cursor.execute(
        "SELECT COLUMN_NAME, IS_NULLABLE, COLUMN_DEFAULT, DATA_TYPE, EXTRA, CHARACTER_MAXIMUM_LENGTH"
        " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (table,),
    )
    row = {}
    for name, nullable, default, data_type, extra, width in cursor.fetchall():
        if name in values:
            value = values[name]
            # cut like Discuz!'s sql_mode='' insert (an IPv6 regip in X3.4's char(15))
            row[name] = value[:width] if isinstance(value, str) and width else value
        elif nullable == "NO" and default is None and "auto_increment" not in extra:
            row[name] = 0 if data_type in NUMERIC_TYPES else ""
    names = ", ".join(f"`{name}`" for name in row)
    cursor.execute(f"REPLACE INTO `{table}` ({names}) VALUES ({', '.join(['%s'] * len(row))})", tuple(row.values()))
