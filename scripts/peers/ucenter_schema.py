"""Our own DDL for UCenter's member tables, from the column list in shared/notes/discuz-ucenter.md."""

from __future__ import annotations


def member_tables(
    version: str, prefix: str = "pre_ucenter_", charset: str = "utf8mb4", doublee: str | None = "0"
) -> list[str]:
    """The member tables, and the settings table with its ``doublee`` row (as UCenter's installer
    writes it: ``0``, one account per e-mail); ``doublee=None`` leaves the row out."""
    wide = version == "1.7"
    password = "varchar(255)" if wide else "char(32)"
    email = "varchar(255)" if wide else "char(32)"
    salt = "varchar(20)" if wide else "char(6)"
    regip = "varchar(45)" if wide else "char(15)"
    mobile = "secmobicc varchar(3) NOT NULL DEFAULT '', secmobile varchar(12) NOT NULL DEFAULT ''," if wide else ""
    return [
        f"DROP TABLE IF EXISTS {prefix}members, {prefix}memberfields, {prefix}settings",
        f"""CREATE TABLE {prefix}members (
            uid mediumint unsigned NOT NULL AUTO_INCREMENT,
            username char(15) NOT NULL DEFAULT '',
            password {password} NOT NULL DEFAULT '',
            email {email} NOT NULL DEFAULT '',
            myid char(30) NOT NULL DEFAULT '',
            myidkey char(16) NOT NULL DEFAULT '',
            regip {regip} NOT NULL DEFAULT '',
            regdate int unsigned NOT NULL DEFAULT 0,
            lastloginip int NOT NULL DEFAULT 0,
            lastlogintime int unsigned NOT NULL DEFAULT 0,
            salt {salt} NOT NULL,
            secques char(8) NOT NULL DEFAULT '',
            {mobile}
            PRIMARY KEY (uid),
            UNIQUE KEY username (username),
            KEY email (email)
        ) ENGINE=InnoDB DEFAULT CHARSET={charset}""",
        f"""CREATE TABLE {prefix}memberfields (
            uid mediumint unsigned NOT NULL,
            blacklist text NOT NULL,
            PRIMARY KEY (uid)
        ) ENGINE=InnoDB DEFAULT CHARSET={charset}""",
        f"""CREATE TABLE {prefix}settings (
            k varchar(32) NOT NULL DEFAULT '',
            v text NOT NULL,
            PRIMARY KEY (k)
        ) ENGINE=InnoDB DEFAULT CHARSET={charset}""",
    ] + ([f"INSERT INTO {prefix}settings (k, v) VALUES ('doublee', '{int(doublee)}')"] if doublee is not None else [])
